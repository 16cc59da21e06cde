"""Merging a table's parts: the newest version of each key, in key order, streamed.

Every part is sorted by key, and a key's newest version is in the newest part that holds it.
A k-way merge over the parts (newest first on equal keys) therefore yields each key once,
in order, while holding one row group per part in memory, whatever the table's size.
Every batch is read with the table's columns (``conform``), so parts written before a column
was added merge with newer ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from compaction.tables import KEY, conform

__all__ = ["OUTPUT_ROWS", "merge_parts"]

OUTPUT_ROWS = 16 * 1024

BatchSource = Callable[[], Iterator[pa.RecordBatch]]


class _Cursor:
    """Position in one part: its current batch and row."""

    def __init__(self, rank: int, batches: Iterator[pa.RecordBatch], schema: pa.Schema) -> None:
        self.rank, self._batches, self._schema = rank, batches, schema
        self.batch: pa.RecordBatch | None = None
        self.keys: list[str] = []
        self.row = 0
        self.advance_batch()

    def advance_batch(self) -> bool:
        for batch in self._batches:
            if batch.num_rows:
                batch = conform(batch, self._schema)
                self.batch, self.keys, self.row = batch, batch.column(KEY).to_pylist(), 0
                return True
        self.batch = None
        return False


def merge_parts(
    parts: Sequence[BatchSource], *, keep_tombstones: bool, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """The merged rows of ``parts`` (oldest first), as batches of at most OUTPUT_ROWS rows.

    ``keep_tombstones`` False drops deleted keys entirely (merging down to a table's oldest
    part, or reading the table); True keeps them to hide the key in parts not merged.
    """
    if len(parts) == 1:
        yield from _single(parts[0](), keep_tombstones, schema)
        return
    cursors = [_Cursor(len(parts) - i, source(), schema) for i, source in enumerate(parts)]
    heap = [(c.keys[0], c.rank, i) for i, c in enumerate(cursors) if c.batch is not None]
    heapq.heapify(heap)
    out = _Output(schema, keep_tombstones)
    last_key: str | None = None
    while heap:
        key, _, i = heapq.heappop(heap)
        cursor = cursors[i]
        if key != last_key:  # the first of equal keys comes from the newest part
            out.take(cursor.batch, cursor.row)
            last_key = key
        cursor.row += 1
        if cursor.row == len(cursor.keys):
            out.flush_batch(cursor.batch)
            if not cursor.advance_batch():
                continue
        heapq.heappush(heap, (cursor.keys[cursor.row], cursor.rank, i))
        if out.rows >= OUTPUT_ROWS:
            yield from out.drain()
    yield from out.drain()


def _single(
    batches: Iterator[pa.RecordBatch], keep_tombstones: bool, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        batch = conform(batch, schema)
        if not keep_tombstones:
            batch = batch.filter(pc.invert(batch.column("deleted")))
        if batch.num_rows:
            yield batch


class _Output:
    """Collects chosen rows as index lists per source batch, then slices them out."""

    def __init__(self, schema: pa.Schema, keep_tombstones: bool) -> None:
        self.schema, self.keep_tombstones = schema, keep_tombstones
        self._pending: dict[int, tuple[pa.RecordBatch, list[int]]] = {}
        self._order: list[tuple[pa.RecordBatch, list[int]]] = []
        self.rows = 0

    def take(self, batch: pa.RecordBatch | None, row: int) -> None:
        assert batch is not None
        entry = self._pending.get(id(batch))
        if entry is None:
            entry = self._pending[id(batch)] = (batch, [])
            self._order.append(entry)
        entry[1].append(row)
        self.rows += 1

    def flush_batch(self, batch: pa.RecordBatch | None) -> None:
        """The cursor left ``batch``: its rows may be emitted now (keeps ids unique)."""
        self._pending.pop(id(batch), None)

    def drain(self) -> Iterator[pa.RecordBatch]:
        if not self.rows:
            return
        pieces = [batch.take(pa.array(rows, pa.int32())) for batch, rows in self._order if rows]
        self._order, self._pending, self.rows = [], {}, 0
        merged = pa.Table.from_batches(pieces, schema=self.schema).sort_by(KEY)
        if not self.keep_tombstones:
            merged = merged.filter(pc.invert(merged.column("deleted")))
        yield from merged.combine_chunks().to_batches()
