"""Snapshot tables: one per MongoDB collection and per protected file root, and their rows.

A table's rows are the latest version of each key: a document (its exact BSON) or a file
(its metadata and the blob holding its content). A *tombstone* row (``deleted``) says a key
no longer exists; it only appears in a table's newer parts, to hide the key in older ones.
Rows are kept as tuples in schema order: cheap to build for every event of a delta.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import pyarrow as pa

from journal.events import ChangeEvent, FileImage
from journal.meta import META_CTIME, META_INODE

__all__ = [
    "DOCUMENTS",
    "FILES",
    "KEY",
    "TableRef",
    "conform",
    "document_row",
    "file_row",
    "file_image",
    "file_images",
    "schema_of",
    "tombstone",
]

MONGODB, FILESYSTEM = "mongodb", "filesystem"
KEY = "key"

# Column order of the tuples below; key first, the common columns next.
_COMMON = [
    pa.field(KEY, pa.string(), nullable=False),
    pa.field("seq", pa.int64(), nullable=False),  # the event that wrote this version
    pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),  # its source time
    pa.field("op", pa.string(), nullable=False),
    pa.field("deleted", pa.bool_(), nullable=False),
    pa.field("size", pa.int64(), nullable=False),
]
DOCUMENTS = pa.schema([*_COMMON, pa.field("body", pa.binary())])
FILES = pa.schema(
    [
        *_COMMON,
        pa.field("blob", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("mode", pa.int32()),
        pa.field("mtime_ns", pa.int64()),
        pa.field("ino", pa.int64()),
        pa.field("link_target", pa.string()),
        pa.field("ctime_ns", pa.int64()),  # added later: null in older parts and events
    ]
)
SIZE_COLUMN = 5


class TableRef(NamedTuple):
    """Which table: a collection of a deployment, or a file root (``deployment`` empty)."""

    source: str  # "mongodb" or "filesystem"
    deployment: str
    namespace: str  # "db.coll", or the root's name

    @property
    def id(self) -> str:
        """Unique name: ``mongodb/<deployment>/<db.coll>`` or ``filesystem/<root>``."""
        if self.source == FILESYSTEM:
            return f"{FILESYSTEM}/{self.namespace}"
        return f"{MONGODB}/{self.deployment}/{self.namespace}"

    @classmethod
    def files(cls, root: str) -> TableRef:
        """The table of a protected file root."""
        return cls(FILESYSTEM, "", root)

    @classmethod
    def collection(cls, deployment: str, namespace: str) -> TableRef:
        """The table of one collection."""
        return cls(MONGODB, deployment, namespace)


def schema_of(ref: TableRef) -> pa.Schema:
    """The schema of ``ref``'s rows."""
    return FILES if ref.source == FILESYSTEM else DOCUMENTS


def document_row(event: ChangeEvent, body: bytes) -> tuple[Any, ...]:
    """The row of a document written by ``event``."""
    # ``_value_``: the member's value without ``Enum.value``'s descriptor (one row per event)
    return (event.key, event.seq, event.source_ts, event.op._value_, False, len(body), body)


def file_row(event: ChangeEvent, image: FileImage) -> tuple[Any, ...]:
    """The row of a file written by ``event``."""
    meta = event.meta or {}
    ino = int(meta.get(META_INODE, 0))
    ctime = meta.get(META_CTIME)
    return (
        event.key,
        event.seq,
        event.source_ts,
        event.op.value,
        False,
        image.size,
        image.blob,
        image.sha256,
        image.mode,
        image.mtime_ns,
        ino,
        image.link_target,
        int(ctime) if ctime is not None else None,
    )


def tombstone(ref: TableRef, key: str, event: ChangeEvent) -> tuple[Any, ...]:
    """A row saying ``key`` was deleted by ``event``."""
    common = (key, event.seq, event.source_ts, event.op.value, True, 0)
    return common + (None,) * (len(schema_of(ref)) - len(common))


def row_size(row: tuple[Any, ...]) -> int:
    """The logical size of a row's version: document or file bytes."""
    return int(row[SIZE_COLUMN])


def file_image(row: dict[str, Any]) -> FileImage:
    """The ``FileImage`` a files-table row describes (``row`` as from ``to_pylist``)."""
    return FileImage(
        row["blob"] or "",
        row["size"],
        row["sha256"] or "",
        row["mode"],
        row["mtime_ns"],
        row["link_target"],
    )


def file_images(batch: pa.RecordBatch) -> Iterator[tuple[str, FileImage]]:
    """Each row of a files-table batch as its key and ``FileImage``, read column by column
    (several times faster than ``file_image`` on rows as dicts)."""
    names = ("key", "blob", "size", "sha256", "mode", "mtime_ns", "link_target")
    columns = [batch.column(name).to_pylist() for name in names]
    for key, blob, size, sha256, mode, mtime_ns, link_target in zip(*columns, strict=True):
        yield key, FileImage(blob or "", size, sha256 or "", mode, mtime_ns, link_target)


def conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns: a part written before a column was added reads
    with that column null (a batch that already has every column is returned as it is)."""
    if batch.num_columns == len(schema):
        return batch
    have = batch.schema.names
    arrays = [
        batch.column(f.name) if f.name in have else pa.nulls(batch.num_rows, f.type) for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def to_batch(ref: TableRef, rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
    """Rows (in schema order) as one record batch."""
    schema = schema_of(ref)
    columns = list(zip(*rows, strict=True)) if rows else [()] * len(schema)
    arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)
