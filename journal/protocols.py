"""The small interfaces the rest of Hindsight programs against."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from journal.events import ChangeEvent, SeqRange

__all__ = ["EventSink", "Store", "StoreStat"]


@dataclass(frozen=True, slots=True)
class StoreStat:
    """Size and modification time of one stored object."""

    key: str
    size: int
    mtime_ns: int


class Store(Protocol):
    """A flat namespace of immutable-ish objects under '/'-separated keys.

    Contract, for every backend:
    - ``put`` is atomic: a reader sees the old object or the whole new one, never part; once
      it returns the object is durable. Putting the same key again replaces it.
    - ``get`` and ``stat`` raise ``journal.errors.NotFound`` for a missing key.
    - ``delete`` of a missing key is not an error (idempotent).
    - ``list`` yields keys under ``prefix`` in lexicographic order.
    - Backend failures are raised as ``RepositoryError`` (permanent) with the key named.
    """

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically and durably."""
        ...

    def get(self, key: str) -> bytes:
        """The object under ``key``."""
        ...

    def stat(self, key: str) -> StoreStat:
        """Size and mtime of the object under ``key``."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...


class EventSink(Protocol):
    """Where capture sources put events. Returns once the events are durable (acknowledged)."""

    def append(self, events: Sequence[ChangeEvent]) -> SeqRange:
        """Append ``events`` in order and return the sequence numbers they were given."""
        ...
