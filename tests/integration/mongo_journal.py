"""Helpers for MongoDB capture tests: the state a journal describes, and the live state.

``journal_state`` replays MONGODB events the way a restore of "now" would (a document's
latest image; drops and renames of whole collections), so a test can compare it with what
the server holds, byte for byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from capture.mongo_events import canonical_key
from journal.events import ChangeEvent, Op, Source

State = dict[str, dict[str, bytes]]  # namespace -> canonical key -> BSON


def journal_state(events: Iterable[ChangeEvent]) -> State:
    """Every protected collection's documents as the journal's events leave them."""
    state: State = {}
    for e in events:
        if e.op is Op.MARKER and e.key == "sync-start":
            state.clear()  # a fresh copy follows: what it lacks was deleted meanwhile
        if e.source is not Source.MONGODB or e.op in (Op.MARKER, Op.CHECKPOINT, Op.GAP):
            continue
        if e.op is Op.DELETE and not e.key:
            for ns in [ns for ns in state if ns == e.namespace or ns.startswith(e.namespace + ".")]:
                del state[ns]
        elif e.op is Op.MOVE and not e.key:
            state[(e.meta or {})["to"]] = state.pop(e.namespace, {})
        elif e.op is Op.DELETE:
            state.get(e.namespace, {}).pop(e.key, None)
        elif isinstance(e.after, bytes):
            state.setdefault(e.namespace, {})[e.key] = e.after
    return {ns: docs for ns, docs in state.items() if docs}


def live_state(uri: str, namespaces: Iterable[str]) -> State:
    """What the server holds now in ``namespaces``, as exact BSON."""
    client: MongoClient[RawBSONDocument] = MongoClient(uri, document_class=RawBSONDocument)
    with client:
        state: State = {}
        for ns in namespaces:
            db, _, coll = ns.partition(".")
            docs = {canonical_key(d["_id"]): bytes(d.raw) for d in client[db][coll].find()}
            if docs:
                state[ns] = docs
        return state


def stream_positions(events: Iterable[ChangeEvent]) -> list[bytes]:
    """Resume tokens of the change-stream events (one per change the server reported)."""
    return [
        e.position
        for e in events
        if e.source is Source.MONGODB and e.position and e.op is not Op.CHECKPOINT
    ]


def duplicates(values: Iterable[Any]) -> list[Any]:
    """Values that occur more than once."""
    return [v for v, n in Counter(values).items() if n > 1]
