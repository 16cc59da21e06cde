"""Replaying MongoDB events: resume positions, sync status and known collections."""

from __future__ import annotations

import bson
import pytest

from capture.mongo_state import KnownMongo
from journal.events import ChangeEvent, Op, Source

DOC = bson.encode({"_id": 1})


def ev(
    op: Op, namespace: str = "", key: str = "", *, after: bytes | None = None, **meta: str
) -> ChangeEvent:
    position = meta.pop("position", "").encode()
    meta.setdefault("deployment", "prod")
    return ChangeEvent(
        Source.MONGODB, namespace, key, op, 1, after=after, position=position, meta=meta
    )


def sync_start(**tokens: str) -> ChangeEvent:
    after = bson.encode({scope: {"_data": t} for scope, t in tokens.items()})
    return ev(Op.MARKER, key="sync-start", after=after)


def replay(*events: ChangeEvent) -> KnownMongo:
    known = KnownMongo()
    known.apply_all(events)
    return known


def test_sync_start_without_end_means_the_copy_must_be_redone() -> None:
    known = replay(sync_start(**{"*": "T0"}), ev(Op.INSERT, "db.c", "k", after=DOC))
    state = known.deployment("prod")
    assert not state.synced
    assert bson.decode(state.positions["*"]) == {"_data": "T0"}


def test_positions_follow_streamed_events_per_stream() -> None:
    known = replay(
        sync_start(**{"db.a": "A0", "db.b": "B0"}),
        ev(Op.MARKER, key="sync-end"),
        ev(Op.INSERT, "db.a", "k", after=DOC, stream="db.a", position="A1"),
        ev(Op.CHECKPOINT, "db.b", stream="db.b", position="B7"),
    )
    state = known.deployment("prod")
    assert state.synced
    assert state.positions["db.a"] == b"A1" and state.positions["db.b"] == b"B7"


def test_a_gap_requires_a_new_sync() -> None:
    known = replay(sync_start(), ev(Op.MARKER, key="sync-end"), ev(Op.GAP, reason="lost"))
    assert not known.deployment("prod").synced


@pytest.mark.parametrize(
    ("drop", "left"),
    [
        (ev(Op.DELETE, "db.c", mongo_op="drop"), {"db.cc", "db.c.sub", "dbx.c"}),
        (ev(Op.DELETE, "db", mongo_op="dropDatabase"), {"dbx.c"}),
    ],
    ids=["collection", "database"],
)
def test_drops_remove_exactly_what_was_dropped(drop: ChangeEvent, left: set[str]) -> None:
    inserts = [ev(Op.INSERT, ns, "k", after=DOC) for ns in ("db.c", "db.cc", "db.c.sub", "dbx.c")]
    known = replay(*inserts, drop)
    assert set(known.deployment("prod").collections) == left


def test_a_rename_moves_the_collection_and_its_metadata() -> None:
    known = replay(
        ev(Op.MARKER, "db.a", "collection", after=DOC),
        ev(Op.MOVE, "db.a", to="db.b", mongo_op="rename"),
    )
    assert known.deployment("prod").collections == {"db.b": DOC}


def test_other_sources_and_deployments_are_kept_apart() -> None:
    file_event = ChangeEvent(Source.FILESYSTEM, "app", "x", Op.DELETE, 1)
    other = ev(Op.INSERT, "db.c", "k", after=DOC, deployment="staging")
    known = replay(file_event, other)
    assert known.deployment("prod").collections == {}
    assert set(known.deployment("staging").collections) == {"db.c"}
