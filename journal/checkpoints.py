"""Named consumer checkpoints: the last sequence number a consumer has fully processed."""

from __future__ import annotations

import json
import re

from journal.errors import ConfigError, CorruptionError, NotFound
from journal.events import now_us
from journal.protocols import Store

__all__ = ["Checkpoints"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
PREFIX = "checkpoints/"


class Checkpoints:
    """Checkpoints kept as small JSON objects, each replaced atomically by the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def _key(name: str) -> str:
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"invalid checkpoint name {name!r}: use letters, digits, '.', '_' or '-'"
            )
        return f"{PREFIX}{name}.json"

    def get(self, name: str) -> int | None:
        """The checkpointed sequence number of ``name``, or None if it has none."""
        try:
            raw = self.store.get(self._key(name))
        except NotFound:
            return None
        try:
            return int(json.loads(raw)["seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(
                f"checkpoint {name!r} is malformed", path=self._key(name)
            ) from exc

    def set(self, name: str, seq: int) -> None:
        """Record that ``name`` has processed everything up to ``seq``."""
        if seq < 0:
            raise ValueError("a checkpoint sequence number cannot be negative")
        doc = {"name": name, "seq": seq, "updated_us": now_us()}
        self.store.put(self._key(name), json.dumps(doc).encode())

    def all(self) -> dict[str, int]:
        """Every checkpoint by name."""
        names = (k[len(PREFIX) : -len(".json")] for k in self.store.list(PREFIX))
        return {n: seq for n in names if (seq := self.get(n)) is not None}
