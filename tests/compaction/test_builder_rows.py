"""The builder's rows: the common event (a document written) takes a short path through
``apply_all``; its rows must be the ones ``document_row`` and ``tombstone`` define."""

from __future__ import annotations

from pathlib import Path

from compaction.builder import SnapshotBuilder
from compaction.parquet_store import ParquetStore
from compaction.tables import TableRef, document_row, tombstone
from journal.events import ChangeEvent, Op, Source
from journal.meta import META_DEPLOYMENT, META_TO
from tests.compaction.test_snapshots import _doc


class Seen:
    """A side state that records every event it is fed."""

    name = "seen"

    def __init__(self) -> None:
        self.events: list[ChangeEvent] = []

    def load(self, doc: object) -> None:
        pass

    def apply(self, event: ChangeEvent) -> None:
        self.events.append(event)

    def dump(self) -> object:
        return len(self.events)


def _event(seq: int, op: Op, key: str, after: bytes | None, **meta: str) -> ChangeEvent:
    meta = {META_DEPLOYMENT: "main", **meta}
    return ChangeEvent(Source.MONGODB, "app.c", key, op, 1000 + seq, after, meta=meta, seq=seq)


def test_rows_of_written_documents_are_document_rows(tmp_path: Path) -> None:
    events = [
        _event(1, Op.INSERT, "a", _doc(1)),
        _event(2, Op.UPDATE, "b", _doc(2)),
        _event(3, Op.REPLACE, "a", _doc(3)),
        _event(4, Op.UPDATE, "c", None),  # no image: the previous version stays (none here)
        _event(5, Op.DELETE, "b", None),
    ]
    seen = Seen()
    builder = SnapshotBuilder(ParquetStore(tmp_path, None), None, [seen])
    builder.apply_all(events)
    (view,) = builder.current()
    ref = TableRef.collection("main", "app.c")
    assert view.ref == ref
    assert view.changes == [document_row(events[2], _doc(3)), tombstone(ref, "b", events[4])]
    assert seen.events == events, "a side state sees every event, in order"
    assert builder.events == 5 and builder.cut_seq == 5


def test_a_collection_renamed_and_written_again_keeps_both_apart(tmp_path: Path) -> None:
    """The short path remembers a collection's draft; a rename must make it forget."""
    builder = SnapshotBuilder(ParquetStore(tmp_path, None), None)
    builder.apply_all(
        [
            _event(1, Op.INSERT, "a", _doc(1)),
            ChangeEvent(
                Source.MONGODB, "app.c", "", Op.MOVE, 1002,
                meta={META_DEPLOYMENT: "main", META_TO: "app.d"}, seq=2,
            ),
            _event(3, Op.INSERT, "b", _doc(3)),
        ]
    )  # fmt: skip
    tables = {v.ref.namespace: [row[0] for row in v.changes] for v in builder.current()}
    assert tables == {"app.c": ["b"], "app.d": ["a"]}, tables
