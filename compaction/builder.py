"""Building a snapshot incrementally: the previous snapshot plus the events since its cut.

Only tables the events touch are written, and for those only a new part with the keys that
changed; the work grows with the changes since the last snapshot, not with the data. Parts
are then merged size-tiered (a part is merged into the one before it once that one is at most
``FANOUT`` times larger), so a table keeps a logarithmic number of parts and every row is
rewritten a logarithmic number of times over its life.

The rules for folding events into state are FORMAT.md's "Rebuilding the state": a
``sync-start`` replaces a deployment's collections, a drop removes a collection (a
``dropDatabase`` every collection of the database), a rename moves a collection's parts to
the new name without rewriting them, a file delete removes the path and everything under it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc

from compaction.parquet_store import ParquetStore
from compaction.part_keys import (
    TOMBSTONE,
    KeyHasher,
    KeyIndex,
    KeyIndexBuilder,
    key_index_file,
)
from compaction.part_merge import merge_parts
from compaction.snapshot import PART_DIR, PartEntry, Snapshot, TableEntry
from compaction.tables import (
    KEY,
    SIZE_COLUMN,
    TableRef,
    document_row,
    file_row,
    row_size,
    schema_of,
    to_batch,
    tombstone,
)
from compaction.transactions import WholeTransactions
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.meta import META_DEPLOYMENT, META_OLD_PATH, META_OP, META_TO, SYNC_START

__all__ = ["FANOUT", "MAX_PARTS", "SideState", "SnapshotBuilder", "TableView"]

FANOUT = 4
MAX_PARTS = 12
DEFAULT_MEMORY_BUDGET = 64 * 1024 * 1024
ROW_OVERHEAD = 128  # rough bytes of Python objects per buffered row
WRITE_ROWS = 64 * 1024

Row = tuple[Any, ...]


class SideState(Protocol):
    """State another component carries across snapshots (e.g. capture's resume positions).

    The builder loads it from the previous snapshot, feeds it every event it applies, and
    stores ``dump()`` in the new snapshot under ``name``.
    """

    name: str

    def load(self, doc: Any) -> None:
        """Start from ``doc`` (None: from an empty journal)."""

    def apply(self, event: ChangeEvent) -> None:
        """Fold in one event."""

    def dump(self) -> Any:
        """JSON-serialisable state."""


@dataclass(frozen=True)
class TableView:
    """A table at a cut that was not written as a snapshot: parts plus changes in memory."""

    ref: TableRef
    parts: list[PartEntry]
    changes: list[Row]  # sorted by key; tombstones included


@dataclass
class _Draft:
    """A table being built: its committed parts plus the changes not yet written."""

    entry: TableEntry
    changes: dict[str, Row] = field(default_factory=dict)
    new_parts: int = 0


class SnapshotBuilder:
    """Apply events after ``previous``'s cut, then ``finish()`` writes the new snapshot."""

    def __init__(
        self,
        parquet: ParquetStore,
        previous: Snapshot | None,
        side: Sequence[SideState] = (),
        *,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        clock: Callable[[], int] = lambda: time.time_ns() // 1000,
        hasher: KeyHasher | None = None,
    ) -> None:
        self.parquet, self.previous, self.side = parquet, previous, side
        self.hasher = hasher or KeyHasher(None)
        self.memory_budget, self.clock = memory_budget, clock
        self._drafts: dict[str, _Draft] = {}
        # (deployment, namespace) -> that collection's draft, for the common event (a
        # document written): cleared whenever a draft is replaced (drop, rename, sync)
        self._collections: dict[tuple[str, str], _Draft] = {}
        self._buffered = 0
        self._whole = WholeTransactions()
        self._last: ChangeEvent | None = None
        self.events = 0
        for s in side:
            s.load(previous.state.get(s.name) if previous else None)

    # ------------------------------------------------------------------ folding
    def apply_all(self, events: Iterable[ChangeEvent]) -> None:
        """Fold events in seq order; a transaction is applied only once it is complete."""
        side, drafts, mongodb = self.side, self._collections, Source.MONGODB
        insert, update, replace = Op.INSERT, Op.UPDATE, Op.REPLACE  # compared by identity:
        for event in self._whole.feed(events):  # an enum hashes in Python, slowly
            self._last = event
            self.events += 1
            for s in side:
                s.apply(event)
            source, namespace, key, op, source_ts, after, _, _, meta, _, seq = event
            if (
                source is mongodb
                and (op is insert or op is update or op is replace)
                and type(after) is bytes
            ):  # most events, so ``_document``'s first rule inlined: a document written
                where = (meta.get(META_DEPLOYMENT, "") if meta else "", namespace)
                changes = (drafts.get(where) or self._collection(where)).changes
                old = changes.get(key)
                size = len(after)  # the row ``document_row`` makes, without the call:
                changes[key] = (key, seq, source_ts, op._value_, False, size, after)
                self._buffered += size - (old[SIZE_COLUMN] if old else -ROW_OVERHEAD)
            elif source is mongodb:
                self._document(event)
            elif source is Source.FILESYSTEM:
                self._file(event)
            if self._buffered > self.memory_budget:
                self._spill()

    def _collection(self, where: tuple[str, str]) -> _Draft:
        """The draft of collection ``where`` (deployment, namespace), remembered by that."""
        draft = self._collections[where] = self._draft(TableRef.collection(*where))
        return draft

    def _document(self, event: ChangeEvent) -> None:
        meta = event.meta or {}
        deployment = meta.get(META_DEPLOYMENT, "")
        ref = TableRef.collection(deployment, event.namespace)
        if event.op is Op.MARKER and event.key == SYNC_START:
            self._drop_where(lambda r: r.source == ref.source and r.deployment == deployment)
        elif event.op in (Op.INSERT, Op.UPDATE, Op.REPLACE) and isinstance(event.after, bytes):
            self._set(ref, event.key, document_row(event, event.after))
        elif event.op is Op.DELETE and event.key:
            self._set(ref, event.key, tombstone(ref, event.key, event))
        elif event.op is Op.DELETE and meta.get(META_OP) == "dropDatabase":
            prefix = event.namespace + "."
            self._drop_where(
                lambda r: r.deployment == deployment and r.namespace.startswith(prefix)
            )
        elif event.op is Op.DELETE:
            self._drop_where(lambda r: r == ref)
        elif event.op is Op.MOVE and not event.key and meta.get(META_TO):
            self._rename(ref, TableRef.collection(deployment, meta[META_TO]))

    def _file(self, event: ChangeEvent) -> None:
        ref = TableRef.files(event.namespace)
        meta = event.meta or {}
        if event.op is Op.MOVE and META_OLD_PATH in meta:
            self._set(ref, meta[META_OLD_PATH], tombstone(ref, meta[META_OLD_PATH], event))
        if event.op is Op.DELETE:
            for key in [event.key, *self._live_keys_under(ref, event.key)]:
                self._set(ref, key, tombstone(ref, key, event))
        elif isinstance(event.after, FileImage):
            self._set(ref, event.key, file_row(event, event.after))

    def _draft(self, ref: TableRef) -> _Draft:
        draft = self._drafts.get(ref.id)
        if draft is None:
            old = self.previous.tables.get(ref.id) if self.previous else None
            entry = TableEntry(ref, list(old.parts), old.rows, old.bytes) if old else None
            draft = self._drafts[ref.id] = _Draft(entry or TableEntry(ref))
        return draft

    def _set(self, ref: TableRef, key: str, row: Row) -> None:
        changes = self._draft(ref).changes
        old = changes.get(key)
        self._buffered += row_size(row) - (row_size(old) if old else -ROW_OVERHEAD)
        changes[key] = row

    def _refs(self) -> list[TableRef]:
        refs = {d.entry.ref for d in self._drafts.values()}
        if self.previous:
            refs.update(t.ref for t in self.previous.tables.values())
        return sorted(refs)

    def _drop_where(self, dropped: Callable[[TableRef], bool]) -> None:
        self._collections.clear()
        for ref in self._refs():
            if dropped(ref):
                self._forget(ref)
                self._drafts[ref.id] = _Draft(TableEntry(ref))

    def _rename(self, old: TableRef, new: TableRef) -> None:
        if old == new:
            return
        self._collections.clear()
        source = self._draft(old)
        self._forget(new)
        entry = TableEntry(new, source.entry.parts, source.entry.rows, source.entry.bytes)
        self._drafts[new.id] = _Draft(entry, source.changes, source.new_parts)
        self._drafts[old.id] = _Draft(TableEntry(old))

    def _forget(self, ref: TableRef) -> None:
        draft = self._drafts.get(ref.id)
        if draft:
            self._buffered -= sum(row_size(r) + ROW_OVERHEAD for r in draft.changes.values())

    def _live_keys_under(self, ref: TableRef, directory: str) -> list[str]:
        prefix = directory.rstrip("/") + "/"
        draft = self._draft(ref)
        keys = set()
        for batch in self._merged(draft.entry.parts, ref, columns=[KEY]):
            column = batch.column(KEY)
            keys.update(column.filter(pc.starts_with(column, prefix)).to_pylist())
        for key, row in draft.changes.items():
            if key.startswith(prefix):
                (keys.discard if row[4] else keys.add)(key)
        return sorted(keys)

    # ------------------------------------------------------------------ reading
    @property
    def cut_seq(self) -> int:
        """Seq of the last event applied (the previous snapshot's cut if none)."""
        if self._last is not None:
            return self._last.seq
        return self.previous.cut_seq if self.previous else 0

    def current(self) -> list[TableView]:
        """Every table as the applied events leave it, without writing anything: its
        committed parts plus its changes not yet written (sorted by key)."""
        views = []
        for ref in self._refs():
            draft = self._drafts.get(ref.id)
            if draft is None:
                assert self.previous is not None
                views.append(TableView(ref, list(self.previous.tables[ref.id].parts), []))
            elif draft.entry.parts or draft.changes:
                rows = [draft.changes[k] for k in sorted(draft.changes)]
                views.append(TableView(ref, list(draft.entry.parts), rows))
        return views

    # ------------------------------------------------------------------ writing
    def _merged(
        self, parts: Sequence[PartEntry], ref: TableRef, columns: list[str] | None = None
    ) -> Iterator[pa.RecordBatch]:
        if not parts:
            return iter(())
        schema = schema_of(ref)
        if columns:
            schema = pa.schema([schema.field(c) for c in [*columns, "deleted"]])
            columns = [*columns, "deleted"]
        sources = [self._reader(p.file, columns) for p in parts]
        return merge_parts(sources, keep_tombstones=False, schema=schema)

    def _reader(
        self, file: str, columns: list[str] | None
    ) -> Callable[[], Iterator[pa.RecordBatch]]:
        return lambda: self.parquet.batches(file, columns)

    def _spill(self) -> None:
        """Write buffered changes as parts now, so memory stays within the budget."""
        for draft in self._drafts.values():
            if draft.changes:
                self._commit(draft)
        self._buffered = 0

    def _commit(self, draft: _Draft) -> None:
        entry, changes = draft.entry, draft.changes
        before = self._versions_before(entry, changes.keys())
        for key, row in changes.items():
            old_deleted, old_size = before.get(key, (True, 0))
            entry.rows += (0 if row[4] else 1) - (0 if old_deleted else 1)
            entry.bytes += (0 if row[4] else row_size(row)) - (0 if old_deleted else old_size)
        rows = [changes[k] for k in sorted(changes)]
        batches = (
            to_batch(entry.ref, rows[i : i + WRITE_ROWS]) for i in range(0, len(rows), WRITE_ROWS)
        )
        entry.parts.append(self._write_part(entry.ref, batches))
        draft.changes, draft.new_parts = {}, draft.new_parts + 1

    def _write_part(self, ref: TableRef, batches: Iterable[pa.RecordBatch]) -> PartEntry:
        """A Parquet part and its key index; the index is written after the part."""
        index = KeyIndexBuilder(self.hasher)

        def indexed() -> Iterator[pa.RecordBatch]:
            for batch in batches:
                index.add_batch(batch)
                yield batch

        stored = self.parquet.write(PART_DIR, schema_of(ref), indexed())
        keys_sha = index.write(self.parquet.root / key_index_file(stored.file))
        return PartEntry(stored.file, stored.sha256, stored.size, stored.rows, keys_sha)

    def _versions_before(
        self, entry: TableEntry, keys: Iterable[str]
    ) -> dict[str, tuple[bool, int]]:
        """For each of ``keys`` that the committed parts hold: (deleted, size), from the
        newest part holding it. Each part's key index answers by binary search, so this
        costs what the delta costs, not what the table holds."""
        wanted = {self.hasher(k): k for k in keys}
        found: dict[str, tuple[bool, int]] = {}
        for part in reversed(entry.parts):
            if not wanted:
                break
            rel = key_index_file(part.file)
            index = KeyIndex(self.parquet.root / rel, rel)
            try:
                hits = index.lookup(wanted)
            finally:
                index.close()
            for h, size in hits.items():
                found[wanted.pop(h)] = (size == TOMBSTONE, max(size, 0))
        return found

    def _compact(self, draft: _Draft) -> None:
        """Merge the newest parts while the one before is at most FANOUT times larger."""
        parts = draft.entry.parts
        take, rows = 1, parts[-1].rows
        while take < len(parts) and parts[-take - 1].rows <= FANOUT * rows:
            rows += parts[-take - 1].rows
            take += 1
        if len(parts) > MAX_PARTS:
            take = len(parts)
        if take < 2:
            return
        merging, keep = parts[-take:], parts[:-take]
        ref = draft.entry.ref
        sources = [self._reader(p.file, None) for p in merging]
        batches = merge_parts(sources, keep_tombstones=bool(keep), schema=schema_of(ref))
        merged = self._write_part(ref, batches)
        draft.entry.parts = [*keep, merged] if merged.rows else keep

    def finish(self) -> Snapshot:
        """Write the changed tables' parts and return the new snapshot (not yet saved).

        The cut is the last applied event, or, while a transaction's end is not yet in the
        journal, the event before that transaction: a snapshot never holds half of one.
        """
        for draft in self._drafts.values():
            if draft.changes:
                self._commit(draft)
            if draft.new_parts and draft.entry.parts:
                self._compact(draft)
        tables = dict(self.previous.tables) if self.previous else {}
        for ref_id, draft in self._drafts.items():
            tables.pop(ref_id, None)
            if draft.entry.parts:
                tables[ref_id] = draft.entry
        prev = self.previous
        cut_seq = self._last.seq if self._last else (prev.cut_seq if prev else 0)
        cut_us = self._last.capture_ts if self._last else (prev.cut_us if prev else 0)
        return Snapshot(
            cut_seq,
            cut_us,
            self.clock(),
            prev.id if prev else None,
            tables,
            {s.name: s.dump() for s in self.side},
        )
