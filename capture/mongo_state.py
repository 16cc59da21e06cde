"""What the journal says about each protected MongoDB deployment, rebuilt by replay.

Capture resumes from here: the last committed resume position of each change stream, whether
an initial sync finished (a ``sync-start`` marker without its ``sync-end`` means the copy was
cut off and must be redone), and which collections the journal believes exist (to find drops
and renames the stream did not report, by comparing with the live collection list).

Terms:

deployment
    One configured MongoDB source, named in every event's ``meta["deployment"]``.
stream scope
    What one change stream watches: ``*`` for the whole deployment (the normal case), or a
    ``db.coll`` where the server can only watch single collections. Events of a
    collection-scoped stream carry ``meta["stream"]``; events without it belong to ``*``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bson.raw_bson import RawBSONDocument

from journal.events import ChangeEvent, Op, Source
from journal.meta import (
    ALL_SCOPE,
    COLLECTION_MARKER,
    META_DEPLOYMENT,
    META_OP,
    META_STREAM,
    SYNC_END,
    SYNC_START,
)

__all__ = [
    "ALL_SCOPE",
    "COLLECTION_MARKER",
    "DeploymentState",
    "KnownMongo",
    "META_DEPLOYMENT",
    "META_STREAM",
    "SYNC_END",
    "SYNC_START",
]


@dataclass
class DeploymentState:
    """One deployment's resume positions, sync status and known collections."""

    positions: dict[str, bytes] = field(default_factory=dict)
    synced: bool = False
    collections: dict[str, bytes] = field(default_factory=dict)  # namespace -> metadata BSON

    def apply(self, event: ChangeEvent) -> None:
        """Fold one of this deployment's events into the state (in sequence order)."""
        meta = event.meta or {}
        if event.op is Op.MARKER:
            self._marker(event)
        elif event.op is Op.GAP:
            self.synced = False
        elif event.op is Op.DELETE and not event.key:
            self._drop(event.namespace, whole_database=meta.get(META_OP) == "dropDatabase")
        elif event.op is Op.MOVE and not event.key:
            self._rename(event.namespace, meta.get("to", ""))
        elif event.op in (Op.INSERT, Op.UPDATE, Op.REPLACE):
            self.collections.setdefault(event.namespace, b"")
        if event.position and event.key != "invalidate":  # resuming after one is not allowed
            self.positions[meta.get(META_STREAM, ALL_SCOPE)] = event.position

    def _marker(self, event: ChangeEvent) -> None:
        if event.key == SYNC_START:  # a fresh copy follows: it replaces what was known
            self.synced, self.collections = False, {}
            self.positions = {k: bytes(v.raw) for k, v in _positions(event.after).items()}
        elif event.key == SYNC_END:
            self.synced = True
        elif event.key == COLLECTION_MARKER:
            metadata = event.after if isinstance(event.after, bytes) else b""
            self.collections[event.namespace] = metadata

    def _drop(self, namespace: str, *, whole_database: bool) -> None:
        def dropped(ns: str) -> bool:  # dropDatabase names the database, drop the collection
            return ns.startswith(namespace + ".") if whole_database else ns == namespace

        for ns in [n for n in self.collections if dropped(n)]:
            del self.collections[ns]
            self.positions.pop(ns, None)

    def _rename(self, old: str, new: str) -> None:
        if new:
            self.collections[new] = self.collections.pop(old, b"")
        self.positions.pop(old, None)  # a collection-scoped stream ends with its collection


def _positions(after: object) -> dict[str, RawBSONDocument]:
    if not isinstance(after, bytes):
        return {}
    return dict(RawBSONDocument(after))


class KnownMongo:
    """Per deployment, the state replay of the journal gives."""

    def __init__(self) -> None:
        self._deployments: dict[str, DeploymentState] = {}

    def apply(self, event: ChangeEvent) -> None:
        """Fold one journal event in; other sources' events are ignored."""
        if event.source is not Source.MONGODB:
            return
        name = (event.meta or {}).get(META_DEPLOYMENT, "")
        self.deployment(name).apply(event)

    def apply_all(self, events: Iterable[ChangeEvent]) -> None:
        """``apply`` each event in turn."""
        for event in events:
            self.apply(event)

    def dump(self) -> dict[str, Any]:
        """The state as JSON (positions and metadata base64), to carry it in a snapshot."""
        return {
            name: {
                "positions": {scope: _b64(p) for scope, p in state.positions.items()},
                "synced": state.synced,
                "collections": {ns: _b64(m) for ns, m in state.collections.items()},
            }
            for name, state in self._deployments.items()
        }

    def load(self, doc: dict[str, Any] | None) -> None:
        """Replace the state with what ``dump`` described (None: nothing known)."""
        self._deployments = {}
        for name, d in (doc or {}).items():
            state = self.deployment(name)
            state.positions = {s: base64.b64decode(p) for s, p in d["positions"].items()}
            state.synced = bool(d["synced"])
            state.collections = {ns: base64.b64decode(m) for ns, m in d["collections"].items()}

    def deployment(self, name: str) -> DeploymentState:
        """The state of deployment ``name`` (empty if the journal never saw it)."""
        return self._deployments.setdefault(name, DeploymentState())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
