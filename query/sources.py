"""What the views are made of, read from one repository: history files, the journal's tail,
and the catalogs (snapshot manifests, backup and recovery records, the blob store).

Each source is read only when a statement first needs its view (``QueryEngine`` asks), and
gives Arrow data with exactly its view's columns. A record that cannot be read (damaged, or
sealed under a key that was withheld) is left out and described in ``notes``, so one bad
record hides nothing else.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from compaction.backups import Backup, BackupCatalog
from compaction.history import (
    BATCH_ROWS,
    HISTORY_DIR,
    HISTORY_SCHEMA,
    HistoryExport,
    HistoryFile,
    history_batch,
    history_row,
)
from compaction.signed_json import load_document
from compaction.snapshot import Snapshot
from compaction.snapshots import snapshots_of
from journal.codec import AesGcm
from journal.errors import AuthError, CorruptionError, NotFound
from journal.repository import Repository
from query.sealed_files import SealedFiles, sealed_filesystem
from query.views import BACKUPS, BLOBS, RECOVERIES, SNAPSHOT_TABLES, SNAPSHOTS, View

__all__ = ["RECOVERY_DIR", "Sources", "tail_ranges"]

RECOVERY_DIR = "recoveries"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def tail_ranges(covered: list[tuple[int, int]], first: int, last: int) -> list[tuple[int, int]]:
    """The seq ranges of ``first .. last`` that no ``covered`` range (inclusive) holds."""
    ranges, start = [], first
    for lo, hi in sorted(covered):
        if lo > start:
            ranges.append((start, min(lo - 1, last)))
        start = max(start, hi + 1)
    if start <= last:
        ranges.append((start, last))
    return [(a, b) for a, b in ranges if a <= b]


class Sources:
    """The data behind the views of one opened repository."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.notes: list[str] = []
        self.cipher: AesGcm | None = repo.record_cipher
        self.history = HistoryExport.of(repo)
        self.files: list[HistoryFile] = self.history.files()
        self.sealed: SealedFiles | None = None

    # ------------------------------------------------------------------ events
    @property
    def history_dir(self) -> Path:
        """Where the history files are (an absolute path)."""
        return self.repo.root.absolute() / HISTORY_DIR

    def history_paths(self) -> list[str]:
        """Absolute paths of the plain history files, in seq order."""
        root = self.repo.root.absolute()
        return [str(root / f.file) for f in self.files]

    def history_dataset(self) -> ds.Dataset:
        """The sealed history files as one pyarrow dataset, decrypted as DuckDB reads it."""
        assert self.history.store.keys is not None, "only an encrypted repository seals"
        filesystem, self.sealed = sealed_filesystem(self.repo.root, self.history.store.keys)
        paths = [f.file for f in self.files]
        return ds.dataset(paths, schema=HISTORY_SCHEMA, format="parquet", filesystem=filesystem)

    def tail(self) -> Iterator[pa.RecordBatch]:
        """The journal's events that no history file holds, as history rows, in seq order."""
        log = self.repo.log
        covered = [(f.first_seq, f.last_seq) for f in self.files]
        segments = sorted((int(Path(rel).stem), Path(rel).name) for rel, _ in log.segment_files())
        firsts = [first for first, _ in segments]
        rows: list[tuple[object, ...]] = []
        for start, end in tail_ranges(covered, log.first_seq, log.next_seq - 1):
            for events in log.read_batches(start, end):
                for event in events:
                    segment = segments[bisect.bisect_right(firsts, event.seq) - 1][1]
                    rows.append(history_row(event, segment))
                if len(rows) >= BATCH_ROWS:
                    yield history_batch(rows)
                    rows = []
        if rows:
            yield history_batch(rows)

    # ---------------------------------------------------------------- catalogs
    @functools.cached_property
    def _snapshots(self) -> list[Snapshot]:
        catalog = snapshots_of(self.repo).catalog
        return [s for s in map(self._readable(catalog.load), catalog.ids()) if s is not None]

    def snapshots(self) -> pa.Table:
        """One row per snapshot manifest."""
        return _table(SNAPSHOTS, [_snapshot_row(s) for s in self._snapshots])

    def snapshot_tables(self) -> pa.Table:
        """One row per table of each snapshot."""
        rows = [
            {
                "snapshot_id": snap.id,
                "cut_seq": snap.cut_seq,
                "source": t.ref.source,
                "deployment": t.ref.deployment,
                "namespace": t.ref.namespace,
                "rows": t.rows,
                "bytes": t.bytes,
                "parts": len(t.parts),
                "stored_bytes": sum(p.size for p in t.parts),
            }
            for snap in self._snapshots
            for t in snap.tables.values()
        ]
        return _table(SNAPSHOT_TABLES, rows)

    def backups(self) -> pa.Table:
        """One row per readable backup record."""
        catalog = BackupCatalog(self.repo.root, self.repo.store, self.cipher)
        backups, damaged = catalog.readable()
        self.notes += [f"backup record left out: {exc}" for exc in damaged]
        return _table(BACKUPS, [_backup_row(b) for b in backups])

    def blobs(self) -> pa.Table:
        """One row per stored file content; its size and SHA-256 read from its chunk list."""
        store = self.repo.blobs
        rows = []
        for blob_id, pack_id, chunks in store.listing():
            size: int | None
            sha256: str | None
            try:
                ref = store.stat(blob_id)
                size, sha256 = ref.size, ref.sha256
            except AuthError:
                size = sha256 = None  # a secret content, key withheld
            rows.append((blob_id, size, sha256, chunks, pack_id))
        rows.sort()
        return _table(BLOBS, [dict(zip(BLOBS.names, row, strict=True)) for row in rows])

    def recoveries(self) -> pa.Table:
        """One row per readable recovery operation record."""
        folder = self.repo.root / RECOVERY_DIR
        ids = sorted(p.stem for p in folder.glob("recover_*.json")) if folder.is_dir() else []
        docs = map(self._readable(self._recovery_doc), ids)
        return _table(RECOVERIES, [_recovery_row(doc) for doc in docs if doc is not None])

    def _recovery_doc(self, op_id: str) -> dict[str, Any]:
        key = f"{RECOVERY_DIR}/{op_id}.json"
        doc = load_document(self.repo.store, key, self.cipher)
        if not isinstance(doc.get("record"), dict):
            raise CorruptionError("recovery record is malformed: no record", path=key)
        return doc

    def _readable(self, load: Any) -> Any:
        """``load`` that notes and skips a record it cannot read, returning None for it."""

        def guarded(name: str) -> Any:
            try:
                return load(name)
            except (CorruptionError, AuthError, NotFound) as exc:
                self.notes.append(f"{name} left out: {exc}")
                return None

        return guarded


# ---------------------------------------------------------------------- rows
def _table(view: View, rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=view.arrow_schema)


def _us(us: int | None) -> datetime | None:
    """Microseconds since the epoch as an exact UTC datetime (None and 0 stay None)."""
    return _EPOCH + timedelta(microseconds=us) if us else None


def _iso(text: Any) -> datetime | None:
    """An ISO 8601 time of a record, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _snapshot_row(snap: Snapshot) -> dict[str, Any]:
    tables = snap.tables.values()
    return {
        "id": snap.id,
        "cut_seq": snap.cut_seq,
        "cut_ts": _us(snap.cut_us),
        "created_ts": _us(snap.created_us),
        "previous": snap.previous,
        "tables": len(snap.tables),
        "rows": sum(t.rows for t in tables),
        "bytes": sum(t.bytes for t in tables),
        "parts": len({p.file for p in snap.parts()}),
        "stored_bytes": snap.stored_bytes,
    }


def _backup_row(backup: Backup) -> dict[str, Any]:
    m = backup.metadata
    files, verification, storage = m.get("files", {}), m.get("verification", {}), m.get("storage")
    return {
        "backup_id": backup.id,
        "timestamp": _iso(m.get("timestamp")),
        "type": backup.type,
        "scope": m.get("scope"),
        "size": m.get("size"),
        "compressed_size": m.get("compressed_size"),
        "encrypted": m.get("encrypted"),
        "collections": m.get("collections"),
        "files_count": files.get("count"),
        "files_total_size": files.get("total_size"),
        "checksum": verification.get("checksum"),
        "verified": verification.get("verified"),
        "verified_at": _iso(verification.get("verified_at")),
        "storage_location": (storage or {}).get("location"),
        "storage_path": (storage or {}).get("path"),
        "cut_seq": backup.cut_seq,
    }


def _recovery_row(doc: dict[str, Any]) -> dict[str, Any]:
    record = doc["record"]
    options, results = record.get("options") or {}, record.get("results") or {}
    return {
        "operation_id": record.get("operation_id"),
        "backup_id": record.get("backup_id"),
        "status": record.get("status"),
        "started_at": _iso(record.get("started_at")),
        "completed_at": _iso(record.get("completed_at")),
        "moment": options.get("at"),
        "scope": options.get("scope"),
        "paths": options.get("paths"),
        "keys": options.get("keys"),
        "target": options.get("to"),
        "to_db": options.get("to_db"),
        "to_collection": options.get("to_collection"),
        "dry_run": options.get("dry_run"),
        "conflict": options.get("conflict"),
        **{name: results.get(name) for name in ("restored", "failed", "skipped", "conflicts")},
        "errors": record.get("errors"),
        "before_seq": doc.get("before_seq"),
    }
