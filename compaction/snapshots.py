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
from compaction.part_keys import KeyHasher
from compaction.part_merge import merge_parts
from compaction.snapshot import Snapshot, SnapshotCatalog, TableEntry
from compaction.tables import FILESYSTEM, file_image, schema_of
from journal.codec import AesGcm
from journal.events import ChangeEvent, Op, Source, now_us
from journal.log import SegmentLog
from journal.meta import META_DEPLOYMENT, META_INODE
from journal.protocols import Store
from journal.repository import Repository

__all__ = ["Snapshots", "snapshots_of"]

Progress = Callable[[int], None]


class Snapshots:
    """The snapshots of one repository: catalog, Parquet parts, build and read."""

    def __init__(
        self,
        root: Path,
        store: Store,
        parquet: ParquetStore,
        cipher: AesGcm | None,
        key_hash_secret: bytes | None = None,
    ) -> None:
        self.catalog = SnapshotCatalog(root, store, cipher)
        self.parquet = parquet
        self.hasher = KeyHasher(key_hash_secret)

    def take(
        self,
        log: SegmentLog,
        side: Sequence[SideState] = (),
        *,
        upto: int | None = None,
        progress: Progress | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        clock: Callable[[], int] = now_us,
    ) -> Snapshot:
        """A snapshot at ``upto`` (default: the journal's last event), saved and returned.

        Built from the newest snapshot at or before ``upto`` plus the events since; an
        existing snapshot at the same cut is returned as it is.
        """
        end = log.next_seq - 1 if upto is None else upto
        previous = self.catalog.latest(end)
        if previous is not None and previous.cut_seq == end:
            return previous
        builder = SnapshotBuilder(
            self.parquet, previous, side, memory_budget=memory_budget, clock=clock,
            hasher=self.hasher,
        )  # fmt: skip
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

    def events(
        self, snap: Snapshot, sources: Sequence[Source] = (Source.MONGODB, Source.FILESYSTEM)
    ) -> Iterator[ChangeEvent]:
        """Events that rebuild ``snap``'s tables (of ``sources``): each live row as the event
        that wrote it (its op, seq and source time), with the whole image.
        """
        wanted = {s.value.lower() for s in sources}
        for table in snap.tables.values():
            ref = table.ref
            if ref.source not in wanted:
                continue
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
    """The snapshots of an opened repository (sealed when it is encrypted)."""
    sealed = repo.encrypted and repo.ring is not None
    cipher = repo.codec.cipher if sealed else None
    hash_key = repo.ring.subkey("snapshot keys") if sealed and repo.ring else None
    parquet = ParquetStore(repo.root, repo.file_keys if sealed else None)
    return Snapshots(repo.root, repo.store, parquet, cipher, hash_key)
