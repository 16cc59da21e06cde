"""Taking snapshots and reading them back: the one-shot ``take`` and the table readers.

``take`` folds the journal events after the latest snapshot's cut into a new snapshot (see
``builder``). Readers stream a table's current rows (its parts merged) or the whole snapshot
as the events that would rebuild it, so a consumer that replays the journal can start from a
snapshot instead of from the first event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from compaction.builder import DEFAULT_MEMORY_BUDGET, SideState, SnapshotBuilder
from compaction.parquet_store import ParquetStore
from compaction.part_merge import merge_parts
from compaction.snapshot import Snapshot, SnapshotCatalog, TableEntry
from compaction.tables import FILESYSTEM, file_image, schema_of
from journal.events import ChangeEvent, Op, Source
from journal.log import SegmentLog
from journal.meta import META_DEPLOYMENT, META_INODE
from journal.protocols import Store
from journal.repository import Repository

__all__ = ["Snapshots", "snapshots_of"]

Progress = Callable[[int], None]


class Snapshots:
    """The snapshots of one repository: catalog, Parquet parts, build and read."""

    def __init__(
        self, root: Path, store: Store, parquet: ParquetStore, mac_key: bytes | None
    ) -> None:
        self.catalog = SnapshotCatalog(root, store, mac_key)
        self.parquet = parquet

    def take(
        self,
        log: SegmentLog,
        side: Sequence[SideState] = (),
        *,
        upto: int | None = None,
        progress: Progress | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> Snapshot:
        """A snapshot at ``upto`` (default: the journal's last event), saved and returned.

        Built from the newest snapshot at or before ``upto`` plus the events since; an
        existing snapshot at the same cut is returned as it is.
        """
        end = log.next_seq - 1 if upto is None else upto
        previous = self.catalog.latest(end)
        if previous is not None and previous.cut_seq == end:
            return previous
        builder = SnapshotBuilder(self.parquet, previous, side, memory_budget=memory_budget)
        start = previous.cut_seq + 1 if previous else 1
        for batch in log.read_batches(start, end):
            builder.apply_all(batch)
            if progress:
                progress(len(batch))
        snap = builder.finish()
        if previous is not None and snap.cut_seq == previous.cut_seq:
            return previous  # only an unfinished transaction followed the previous cut
        self.catalog.save(snap)
        return snap

    def rows(
        self, table: TableEntry, *, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        """The live rows of ``table`` in key order (parts merged, tombstones dropped)."""
        if not table.parts:
            return iter(())
        schema = schema_of(table.ref)
        if columns is not None:
            columns = list(dict.fromkeys([*columns, "key", "deleted"]))
            schema = pa.schema([schema.field(c) for c in columns])
        sources = [_source(self.parquet, p.file, columns) for p in table.parts]
        return merge_parts(sources, keep_tombstones=False, schema=schema)

    def events(self, snap: Snapshot) -> Iterator[ChangeEvent]:
        """Events that rebuild ``snap``'s tables: each live row as a create or insert.

        Each carries the seq and source time of the event that wrote that version.
        """
        for table in snap.tables.values():
            ref = table.ref
            for batch in self.rows(table):
                for row in _plain_rows(batch):
                    ts = row["ts"]
                    if ref.source == FILESYSTEM:
                        meta = {META_INODE: str(row["ino"])} if row["ino"] else None
                        yield ChangeEvent(
                            Source.FILESYSTEM, ref.namespace, row["key"], Op(row["op"]), ts,
                            file_image(row), meta=meta, seq=row["seq"],
                        )  # fmt: skip
                    else:
                        yield ChangeEvent(
                            Source.MONGODB, ref.namespace, row["key"], Op(row["op"]), ts,
                            row["body"], meta={META_DEPLOYMENT: ref.deployment}, seq=row["seq"],
                        )  # fmt: skip


def _plain_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """Rows as dicts, with ``ts`` as integer microseconds (no float round-trip)."""
    ts = batch.schema.get_field_index("ts")
    return batch.set_column(ts, "ts", batch.column(ts).cast(pa.int64())).to_pylist()


def _source(
    parquet: ParquetStore, file: str, columns: list[str] | None
) -> Callable[[], Iterator[pa.RecordBatch]]:
    return lambda: parquet.batches(file, columns)


def snapshots_of(repo: Repository) -> Snapshots:
    """The snapshots of an opened repository (sealed and MAC'd when it is encrypted)."""
    sealed = repo.encrypted and repo.ring is not None
    cipher = repo.codec.cipher if sealed else None
    mac_key = repo.ring.subkey("snapshots") if sealed and repo.ring else None
    return Snapshots(repo.root, repo.store, ParquetStore(repo.root, cipher), mac_key)
