"""A part's key index: which keys a Parquet part holds, and their sizes, without reading it.

A new snapshot must know, for each key that changed, whether an older part already held it
(to keep the table's row and byte counts exact). Reading the older parts' key columns costs
as much as the table is large; this index answers with a binary search per changed key, so
the cost follows the delta. It sits beside the part (``<part>.keys``), is written with it,
and its SHA-256 is in the snapshot manifest.

Layout (little-endian): ``"HSKX" | u16 version 1 | u16 reserved | u64 count``, then
``count`` u64 key hashes in ascending order, then ``count`` i64 sizes in the same order
(-1 for a tombstone). A key hash is the first 8 bytes of BLAKE2b of the key's UTF-8, keyed
in an encrypted repository (so the file reveals nothing about keys) and unkeyed otherwise.
Two keys with equal hashes (about 1 in 2^64 per pair) could make a count off by one; the
data itself is never affected.
"""

from __future__ import annotations

import array
import bisect
import hashlib
import mmap
import struct
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from journal.errors import CorruptionError
from journal.fsutil import atomic_write

__all__ = ["TOMBSTONE", "KeyHasher", "KeyIndex", "KeyIndexBuilder", "key_index_file"]

MAGIC = b"HSKX"
HEADER = struct.Struct("<4sHHQ")
TOMBSTONE = -1


def key_index_file(part_file: str) -> str:
    """The index file of a part (both relative to the repository)."""
    return part_file.removesuffix(".parquet") + ".keys"


class KeyHasher:
    """Hashes keys for the index, keyed with ``secret`` when given."""

    def __init__(self, secret: bytes | None) -> None:
        self.secret = secret or b""

    def __call__(self, key: str) -> int:
        digest = hashlib.blake2b(key.encode(), digest_size=8, key=self.secret).digest()
        return int.from_bytes(digest, "little")


class KeyIndexBuilder:
    """Collects (key, size) as rows are written; ``write`` stores the sorted index."""

    def __init__(self, hasher: KeyHasher) -> None:
        self.hasher = hasher
        self._hashes = array.array("Q")  # 16 bytes a row in all, whatever the table's size
        self._sizes = array.array("q")

    def add_batch(self, batch: pa.RecordBatch) -> None:
        """Index the rows of one batch of a part (columns key, deleted, size)."""
        hasher = self.hasher
        self._hashes.extend(hasher(k) for k in batch.column("key").to_pylist())
        deleted, sizes = batch.column("deleted").to_pylist(), batch.column("size").to_pylist()
        self._sizes.extend(TOMBSTONE if d else s for d, s in zip(deleted, sizes, strict=True))

    def write(self, path: Path) -> str:
        """Write the index atomically; its SHA-256."""
        hashes = _arrow(self._hashes, pa.uint64())
        order = pc.sort_indices(hashes)
        sorted_hashes = pc.take(hashes, order)
        sizes = pc.take(_arrow(self._sizes, pa.int64()), order)
        body = (
            HEADER.pack(MAGIC, 1, 0, len(hashes))
            + _raw(sorted_hashes, len(hashes) * 8)
            + _raw(sizes, len(hashes) * 8)
        )
        atomic_write(path, body, mode=0o444)
        return hashlib.sha256(body).hexdigest()


def _arrow(values: array.array[int], type_: pa.DataType) -> pa.Array:
    """A fixed-width Arrow array over ``values``' buffer, without a copy per element."""
    return pa.Array.from_buffers(type_, len(values), [None, pa.py_buffer(values)])


def _raw(column: pa.Array, size: int) -> bytes:
    """The values buffer of a null-free fixed-width array, exactly ``size`` bytes."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    buffer = column.buffers()[1]
    offset = column.offset * 8
    return buffer.to_pybytes()[offset : offset + size] if buffer is not None else b""


class KeyIndex:
    """A part's key index, memory-mapped: lookups touch only the pages they search."""

    def __init__(self, path: Path, rel: str) -> None:
        self.rel = rel
        with open(path, "rb") as f:
            size = path.stat().st_size
            if size < HEADER.size:
                raise CorruptionError("not a key index (too short)", path=rel)
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self._view = memoryview(self._map)
        magic, version, _, count = HEADER.unpack_from(self._view)
        if magic != MAGIC or version != 1 or size != HEADER.size + 16 * count:
            self.close()
            raise CorruptionError("not a key index, or the wrong size or version", path=rel)
        self._hashes = self._view[HEADER.size : HEADER.size + 8 * count].cast("Q")
        self._sizes = self._view[HEADER.size + 8 * count :].cast("q")

    def lookup(self, hashes: Iterable[int]) -> dict[int, int]:
        """For each of ``hashes`` the part holds: its size, or -1 for a tombstone."""
        found = {}
        n = len(self._hashes)
        for h in hashes:
            i = bisect.bisect_left(self._hashes, h)
            if i < n and self._hashes[i] == h:
                found[h] = self._sizes[i]
        return found

    def close(self) -> None:
        for view in (getattr(self, "_hashes", None), getattr(self, "_sizes", None), self._view):
            if view is not None:
                view.release()
        self._map.close()
