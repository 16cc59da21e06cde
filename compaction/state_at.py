"""The state at any cut: the nearest snapshot at or before it plus the events up to it.

Nothing is written: the events after the snapshot are folded in memory (the same rules as
a snapshot build, ``builder``), and each table's rows are the snapshot's parts merged with
those changes, newest first, streamed in key order. Memory follows the events between the
snapshot and the cut, never the size of the data.

The changes are laid over the parts' merged rows a batch at a time, in Arrow: a part's rows
whose key changed are dropped, the changes up to the batch's last key are added, and the
result sorted. A row-by-row merge of the in-memory changes would cost more than the fold.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from compaction.builder import SideState, SnapshotBuilder, TableView
from compaction.parquet_store import ParquetStore
from compaction.part_merge import merge_parts
from compaction.snapshot import Snapshot
from compaction.snapshots import Snapshots
from compaction.tables import KEY, TableRef, schema_of, to_batch
from journal.errors import NotFound
from journal.log import SegmentLog

__all__ = ["StateAt", "state_at"]

NEVER_SPILL = 2**62  # a restore writes nothing into the repository
DELETED = 4  # a row's column saying it is a tombstone

Row = tuple[Any, ...]


@dataclass
class StateAt:
    """Every table at ``cut_seq``, built from ``snapshot`` (None: from the first event)."""

    cut_seq: int
    snapshot: Snapshot | None
    tables: list[TableView]
    snapshots: Snapshots

    def rows(self, table: TableView) -> Iterator[pa.RecordBatch]:
        """The live rows of ``table`` at the cut, in key order."""
        parquet, schema = self.snapshots.parquet, schema_of(table.ref)
        sources = [_part(parquet, p.file) for p in table.parts]
        parts = merge_parts(sources, keep_tombstones=False, schema=schema) if sources else iter(())
        if not table.changes:
            return parts
        return _overlay(parts, table.ref, table.changes)


def _part(parquet: ParquetStore, file: str) -> Callable[[], Iterator[pa.RecordBatch]]:
    return lambda: parquet.batches(file)


def _overlay(
    parts: Iterator[pa.RecordBatch], ref: TableRef, changes: list[Row]
) -> Iterator[pa.RecordBatch]:
    """``parts`` (live rows, in key order) with ``changes`` (rows and tombstones, sorted by
    key, each key once) laid over them: in key order, each key once, tombstones dropped."""
    keys = [row[0] for row in changes]
    changed = pa.array(keys, pa.string())
    done = 0  # changes before this one are out
    for batch in parts:
        if not batch.num_rows:
            continue
        column = batch.column(KEY)
        start = bisect_left(keys, column[0].as_py(), lo=done)  # only these can be in it
        upto = bisect_right(keys, column[-1].as_py(), lo=start)
        hidden = pc.is_in(column, value_set=changed.slice(start, upto - start))
        kept = batch.filter(pc.invert(hidden))
        yield from _sorted(ref, kept, changes[done:upto])
        done = upto
    yield from _sorted(ref, None, changes[done:])


def _sorted(
    ref: TableRef, kept: pa.RecordBatch | None, changes: list[Row]
) -> Iterator[pa.RecordBatch]:
    """``kept`` rows and the live ones of ``changes`` (no key in common), sorted by key."""
    live = [row for row in changes if not row[DELETED]]
    pieces = [
        b for b in (kept, to_batch(ref, live) if live else None) if b is not None and b.num_rows
    ]
    if len(pieces) == 1:
        yield pieces[0]
    elif pieces:
        yield from pa.Table.from_batches(pieces).sort_by(KEY).combine_chunks().to_batches()


def state_at(
    snapshots: Snapshots, log: SegmentLog, cut_seq: int, side: Sequence[SideState] = ()
) -> StateAt:
    """The state after event ``cut_seq`` (0: before the first event); ``side`` states are
    loaded from the snapshot and fed the same events, so they too end at the cut.

    NotFound when the events between the nearest snapshot and the cut were pruned.
    """
    base = snapshots.catalog.latest(cut_seq)
    start = base.cut_seq + 1 if base else 1
    if cut_seq >= start and start < log.first_seq:
        raise NotFound(
            f"the events from seq {start} to {min(cut_seq, log.first_seq - 1)} were pruned and "
            "no snapshot covers them: this moment is outside the point-in-time window"
        )
    builder = SnapshotBuilder(snapshots.parquet, base, side, memory_budget=NEVER_SPILL)
    if cut_seq >= start:
        for batch in log.read_batches(start, cut_seq):
            builder.apply_all(batch)
    return StateAt(builder.cut_seq, base, builder.current(), snapshots)
