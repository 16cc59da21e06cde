"""The views ``hindsight sql`` offers: their names, columns, DuckDB types and meanings.

One table of definitions serves three readers: the engine (the DuckDB tables and views it
creates), the Arrow schemas the sources fill them with, and ``hindsight sql --views`` /
docs/QUERY.md. ``events`` has exactly the columns of a history file (docs/FORMAT.md, "Event
history"); a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pyarrow as pa

__all__ = [
    "BACKUPS",
    "BLOBS",
    "EVENTS",
    "RECOVERIES",
    "SNAPSHOTS",
    "SNAPSHOT_TABLES",
    "VIEWS",
    "Column",
    "View",
    "describe_views",
]

_ARROW_TYPES: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
    "VARCHAR": pa.string(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "VARCHAR[]": pa.list_(pa.string()),
    "MAP(VARCHAR, BIGINT)": pa.map_(pa.string(), pa.int64()),
}


class Column(NamedTuple):
    """One column: its name, DuckDB type and what it holds."""

    name: str
    type: str
    doc: str

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type sources fill it with."""
        return _ARROW_TYPES[self.type]


class View(NamedTuple):
    """One view of ``hindsight sql``."""

    name: str
    doc: str
    columns: tuple[Column, ...]

    @property
    def names(self) -> list[str]:
        """The column names, in order."""
        return [c.name for c in self.columns]

    @property
    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of its rows."""
        return pa.schema([pa.field(c.name, c.arrow_type) for c in self.columns])

    def ddl(self, table: str) -> str:
        """``CREATE TABLE`` of an empty table with exactly these columns."""
        columns = ", ".join(f'"{c.name}" {c.type}' for c in self.columns)
        return f"CREATE TABLE {table} ({columns})"

    def to_dict(self) -> dict[str, Any]:
        """The view and its columns, for ``--json`` and docs."""
        return {
            "name": self.name,
            "description": self.doc,
            "columns": [c._asdict() for c in self.columns],
        }


def _cols(*rows: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*row) for row in rows)


EVENTS = View(
    "events",
    "Every journal event, one row each, in no particular order (ORDER BY seq for journal "
    "order): the sealed history files plus the journal's tail, without after-images.",
    _cols(
        ("seq", "BIGINT", "the event's sequence number (unique, gapless from the oldest kept)"),
        ("source_ts", "TIMESTAMPTZ", "when it happened at the source (UTC)"),
        ("capture_ts", "TIMESTAMPTZ", "when Hindsight captured it (UTC)"),
        ("source", "VARCHAR", "MONGODB, FILESYSTEM or SYSTEM"),
        ("deployment", "VARCHAR", "the MongoDB deployment's name; NULL for other sources"),
        ("namespace", "VARCHAR", "db.collection, a file root's name, or a system namespace"),
        ("key", "VARCHAR", "document _id as canonical extended JSON, or root-relative path; "
         "empty for a whole-collection event (drop, rename)"),
        ("op", "VARCHAR", "INSERT, UPDATE, REPLACE, DELETE, CREATE, MODIFY, MOVE, MARKER, GAP "
         "or CHECKPOINT"),
        ("size", "BIGINT", "bytes of the after-image (BSON or file content); NULL without one"),
        ("hash", "VARCHAR", "SHA-256 (hex) of the BSON after-image, or the file's SHA-256 as "
         "stored; NULL without an after-image"),
        ("blob", "VARCHAR", "a file version's blob id (empty for a symlink); NULL otherwise"),
        ("txn", "VARCHAR", "the MongoDB transaction id; NULL outside transactions"),
        ("old_path", "VARCHAR", "a file move's previous path; NULL otherwise"),
        ("segment", "VARCHAR", "the journal segment holding the event"),
    ),
)  # fmt: skip

SNAPSHOTS = View(
    "snapshots",
    "Every snapshot manifest: the state of every table as of one journal seq (its cut).",
    _cols(
        ("id", "VARCHAR", "the cut as 20 digits (the manifest's name)"),
        ("cut_seq", "BIGINT", "the last event the snapshot includes"),
        ("cut_ts", "TIMESTAMPTZ", "capture time of the event at the cut; NULL when empty"),
        ("created_ts", "TIMESTAMPTZ", "when the snapshot was built"),
        ("previous", "VARCHAR", "the snapshot it was built from; NULL for the first"),
        ("tables", "INTEGER", "tables (collections and file roots) with rows or tombstones"),
        ("rows", "BIGINT", "live documents and files, all tables"),
        ("bytes", "BIGINT", "BSON and file bytes of the live rows, all tables"),
        ("parts", "INTEGER", "distinct Parquet parts it uses"),
        ("stored_bytes", "BIGINT", "stored bytes of those parts (shared with other snapshots)"),
    ),
)

SNAPSHOT_TABLES = View(
    "snapshot_tables",
    "Every table of every snapshot: live rows and bytes of a collection or file root at a cut.",
    _cols(
        ("snapshot_id", "VARCHAR", "the snapshot (snapshots.id)"),
        ("cut_seq", "BIGINT", "the snapshot's cut"),
        ("source", "VARCHAR", "mongodb or filesystem"),
        ("deployment", "VARCHAR", "the MongoDB deployment; empty for a file root"),
        ("namespace", "VARCHAR", "db.collection or the file root's name"),
        ("rows", "BIGINT", "live documents or files"),
        ("bytes", "BIGINT", "their BSON or file bytes"),
        ("parts", "INTEGER", "Parquet parts holding the table"),
        ("stored_bytes", "BIGINT", "stored bytes of those parts"),
    ),
)

BACKUPS = View(
    "backups",
    "Every readable backup record: the brief's backup metadata, plus the cut it restores to.",
    _cols(
        ("backup_id", "VARCHAR", "backup_YYYYMMDD_HHMMSS"),
        ("timestamp", "TIMESTAMPTZ", "when the record was written"),
        ("type", "VARCHAR", "full or incremental"),
        ("scope", "VARCHAR[]", "some of mongodb, filesystem, config"),
        ("size", "BIGINT", "bytes, uncompressed (see FORMAT.md, Backups)"),
        ("compressed_size", "BIGINT", "bytes the backup added to the repository"),
        ("encrypted", "BOOLEAN", "true in an aes-256-gcm repository"),
        ("collections", "MAP(VARCHAR, BIGINT)", "documents per collection in scope"),
        ("files_count", "BIGINT", "files in scope (full: live; incremental: changed)"),
        ("files_total_size", "BIGINT", "their bytes"),
        ("checksum", "VARCHAR", "sha256:<hex> of what the backup names"),
        ("verified", "BOOLEAN", "the last verification passed"),
        ("verified_at", "TIMESTAMPTZ", "when it ran; NULL if never"),
        ("storage_location", "VARCHAR", "local"),
        ("storage_path", "VARCHAR", "the snapshot manifest (full) or journal directory"),
        ("cut_seq", "BIGINT", "the journal seq a restore to this backup returns to"),
    ),
)

BLOBS = View(
    "blobs",
    "Every file content in the blob store (deduplicated: one row per distinct content).",
    _cols(
        ("blob_id", "VARCHAR", "the blob id, as events.blob names it"),
        ("size", "BIGINT", "content bytes; NULL for a secret content when the key is withheld"),
        ("sha256", "VARCHAR", "content SHA-256 (hex); NULL when size is"),
        ("chunks", "INTEGER", "content-defined chunks it is made of (shared between blobs)"),
        ("pack", "VARCHAR", "the pack file holding its chunk list"),
    ),
)

RECOVERIES = View(
    "recoveries",
    "Every recovery operation record (hindsight recover restore), with its options flattened.",
    _cols(
        ("operation_id", "VARCHAR", "recover_YYYYMMDD_HHMMSS"),
        ("backup_id", "VARCHAR", "the backup restored; NULL for a moment (--at)"),
        ("status", "VARCHAR", "pending, in_progress, completed or failed"),
        ("started_at", "TIMESTAMPTZ", "when it started"),
        ("completed_at", "TIMESTAMPTZ", "when it ended; NULL while running"),
        ("moment", "VARCHAR", "the moment restored to (--at), as given; NULL for a backup"),
        ("scope", "VARCHAR[]", "what was restored (mongodb, filesystem, config)"),
        ("paths", "VARCHAR[]", "path filters"),
        ("keys", "VARCHAR[]", "document key filters"),
        ("target", "VARCHAR", "--to directory, or NULL for in place"),
        ("to_db", "VARCHAR", "--to-db; NULL for in place"),
        ("to_collection", "VARCHAR", "--to-collection; NULL for in place"),
        ("dry_run", "BOOLEAN", "only planned"),
        ("conflict", "VARCHAR", "the conflict strategy"),
        ("restored", "BIGINT", "files and documents written or deleted"),
        ("failed", "BIGINT", "items that failed"),
        ("skipped", "BIGINT", "items already as wanted"),
        ("conflicts", "BIGINT", "items renamed or merged"),
        ("errors", "VARCHAR[]", "one line per failure"),
        ("before_seq", "BIGINT", "seq of its restore-start marker: the state before it"),
    ),
)

VIEWS: tuple[View, ...] = (EVENTS, SNAPSHOTS, SNAPSHOT_TABLES, BACKUPS, BLOBS, RECOVERIES)
"""Every view, in the order ``--views`` lists them."""


def describe_views() -> list[dict[str, Any]]:
    """Every view and its columns, ready for ``--json``."""
    return [view.to_dict() for view in VIEWS]
