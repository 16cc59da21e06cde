"""The state at any cut: the nearest snapshot at or before it plus the events up to it.

Nothing is written: the events after the snapshot are folded in memory (the same rules as
a snapshot build, ``builder``), and each table's rows are the snapshot's parts merged with
those changes, newest first, streamed in key order. Memory follows the events between the
snapshot and the cut, never the size of the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from compaction.builder import SideState, SnapshotBuilder, TableView
from compaction.parquet_store import ParquetStore
from compaction.part_merge import merge_parts
from compaction.snapshot import Snapshot
from compaction.snapshots import Snapshots
from compaction.tables import schema_of, to_batch
from journal.errors import NotFound
from journal.log import SegmentLog

__all__ = ["StateAt", "state_at"]

NEVER_SPILL = 2**62  # a restore writes nothing into the repository


@dataclass
class StateAt:
    """Every table at ``cut_seq``, built from ``snapshot`` (None: from the first event)."""

    cut_seq: int
    snapshot: Snapshot | None
    tables: list[TableView]
    snapshots: Snapshots

    def rows(self, table: TableView) -> Iterator[pa.RecordBatch]:
        """The live rows of ``table`` at the cut, in key order."""
        parquet = self.snapshots.parquet
        sources: list[Callable[[], Iterator[pa.RecordBatch]]] = [
            _part(parquet, p.file) for p in table.parts
        ]
        if table.changes:
            batch = to_batch(table.ref, table.changes)
            sources.append(lambda: iter([batch]))
        if not sources:
            return iter(())
        return merge_parts(sources, keep_tombstones=False, schema=schema_of(table.ref))


def _part(parquet: ParquetStore, file: str) -> Callable[[], Iterator[pa.RecordBatch]]:
    return lambda: parquet.batches(file)


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
