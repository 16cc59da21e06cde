"""The files table's ``ctime_ns`` column: recorded from ``meta["ctime"]``, and parts written
before the column existed still read (and merge with newer parts) with it null."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from compaction.builder import TableView
from compaction.parquet_store import ParquetStore
from compaction.part_merge import merge_parts
from compaction.snapshot import PART_DIR, PartEntry
from compaction.snapshots import snapshots_of
from compaction.state_at import StateAt
from compaction.tables import FILES, TableRef, file_row, to_batch
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.meta import META_CTIME, META_INODE
from journal.repository import Repository

OLD_FILES = pa.schema([f for f in FILES if f.name != "ctime_ns"])
REF = TableRef.files("app")


def _event(seq: int, key: str, ctime: int | None) -> ChangeEvent:
    meta = {META_INODE: "7"} | ({META_CTIME: str(ctime)} if ctime is not None else {})
    image = FileImage("ab" * 32, 3, "cd" * 32, 0o644, 1_000)
    return ChangeEvent(Source.FILESYSTEM, "app", key, Op.CREATE, seq, image, meta=meta, seq=seq)


def _old_part(store: ParquetStore, keys: list[str]) -> str:
    """A part as written before ``ctime_ns`` was added."""
    rows = [file_row(_event(i + 1, k, None), _event(i + 1, k, None).after)[:-1]  # type: ignore[arg-type]
            for i, k in enumerate(keys)]  # fmt: skip
    columns = list(zip(*rows, strict=True))
    batch = pa.RecordBatch.from_arrays(
        [pa.array(c, type=f.type) for c, f in zip(columns, OLD_FILES, strict=True)],
        schema=OLD_FILES,
    )
    return store.write(PART_DIR, OLD_FILES, [batch]).file


def _new_part(store: ParquetStore, events: list[ChangeEvent]) -> str:
    rows = [file_row(e, e.after) for e in events]  # type: ignore[arg-type]
    return store.write(PART_DIR, FILES, [to_batch(REF, rows)]).file


def _rows(batches: object) -> dict[str, int | None]:
    table = pa.Table.from_batches(list(batches))  # type: ignore[call-overload]
    assert table.schema.equals(FILES), table.schema
    keys, ctimes = table.column("key").to_pylist(), table.column("ctime_ns").to_pylist()
    return dict(zip(keys, ctimes, strict=True))


def test_file_rows_carry_the_recorded_ctime() -> None:
    recorded, legacy = _event(1, "a", 123), _event(1, "a", None)
    row = dict(zip(FILES.names, file_row(recorded, recorded.after), strict=True))  # type: ignore[arg-type]
    assert row["ctime_ns"] == 123 and row["ino"] == 7
    old = dict(zip(FILES.names, file_row(legacy, legacy.after), strict=True))  # type: ignore[arg-type]
    assert old["ctime_ns"] is None


def test_old_parts_read_alone_and_merged_with_new_ones(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path, None)
    old = _old_part(store, ["a", "b"])
    new = _new_part(store, [_event(3, "b", 55), _event(4, "c", 66)])
    alone = merge_parts([lambda: store.batches(old)], keep_tombstones=False, schema=FILES)
    assert _rows(alone) == {"a": None, "b": None}
    both = merge_parts(
        [lambda: store.batches(old), lambda: store.batches(new)],
        keep_tombstones=False,
        schema=FILES,
    )
    assert _rows(both) == {"a": None, "b": 55, "c": 66}, "the newest part wins per key"


def test_state_at_lays_new_changes_over_an_old_part(tmp_path: Path) -> None:
    Repository.init(tmp_path / "repo", None)
    with Repository.open(tmp_path / "repo", None) as repo:
        snapshots = snapshots_of(repo)
        old = _old_part(snapshots.parquet, ["a", "b"])
        part = PartEntry(old, "", 0, 2, "")
        change = _event(9, "b", 99)
        view = TableView(REF, [part], [file_row(change, change.after)])  # type: ignore[arg-type]
        state = StateAt(9, None, [view], snapshots)
        assert _rows(state.rows(view)) == {"a": None, "b": 99}
