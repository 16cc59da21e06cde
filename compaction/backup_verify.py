"""Verifying a backup: everything a restore to it would read is present and intact.

Without ``read_data``: the record and snapshot manifests are intact (checksum, or
authentication in an encrypted repository), the checksum recorded at backup time matches,
and every file the backup needs (Parquet parts and their key indexes, the journal segments
a restore replays) has the size and SHA-256 its manifest lists. With
``read_data``: every Parquet row and journal batch is also decrypted and decoded, every
document must be valid BSON, and every file content the backup references is read back and
checked against its SHA-256. Each problem is located (file and, where known, offset).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import bson

from compaction.backups import (
    FULL,
    Backup,
    BackupCatalog,
    iso_time,
    segments_checksum,
    snapshot_checksum,
)
from compaction.part_keys import key_index_file
from compaction.snapshot import Snapshot
from compaction.snapshots import Snapshots
from compaction.tables import FILESYSTEM
from journal.errors import HindsightError
from journal.events import FileImage, Source, now_us
from journal.fsutil import file_sha256
from journal.integrity import Problem
from journal.repository import Repository

__all__ = ["VerifyReport", "verify_backup"]

Progress = Callable[[int], None]


@dataclass
class VerifyReport:
    """What a verification checked and found."""

    backup_id: str
    read_data: bool
    problems: list[Problem] = field(default_factory=list)
    files_checked: int = 0
    rows_read: int = 0
    blobs_read: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_backup(
    repo: Repository,
    snapshots: Snapshots,
    catalog: BackupCatalog,
    backup: Backup,
    *,
    read_data: bool = False,
    progress: Progress | None = None,
    record: bool = True,
) -> VerifyReport:
    """Check ``backup`` and (with ``record``) store the result in its metadata."""
    check = _Check(repo, snapshots, catalog, VerifyReport(backup.id, read_data), progress)
    check.backup(backup)
    if record:
        verification = backup.metadata["verification"]
        verification["verified"] = check.report.ok
        verification["verified_at"] = iso_time(now_us())
        backup.point["verify_problems"] = [str(p) for p in check.report.problems[:20]]
        catalog.save(backup)
    return check.report


class _Check:
    def __init__(
        self,
        repo: Repository,
        snapshots: Snapshots,
        catalog: BackupCatalog,
        report: VerifyReport,
        progress: Progress | None,
    ) -> None:
        self.repo, self.snapshots, self.catalog = repo, snapshots, catalog
        self.report, self.progress = report, progress
        self._blobs_seen: set[str] = set()

    def problem(self, path: str, offset: int | None, reason: str) -> None:
        self.report.problems.append(Problem(path, offset, reason))

    def backup(self, backup: Backup) -> None:
        if backup.type == FULL:
            checksum = backup.metadata["verification"]["checksum"]
            self._snapshot(str(backup.point.get("snapshot")), checksum, backup.id)
        else:
            self._incremental(backup)

    # ------------------------------------------------------------------ snapshots
    def _snapshot(self, snap_id: str, checksum: str | None, recorded_by: str) -> Snapshot | None:
        """The snapshot's manifest, every part it names, and with read_data their rows."""
        try:
            snap = self.snapshots.catalog.load(snap_id)
        except HindsightError as exc:
            self.problem(exc.path or f"snapshots/{snap_id}.json", exc.offset, exc.reason)
            return None
        if checksum and snapshot_checksum(snap) != checksum:
            self.problem(snap.key, None, f"does not match the checksum recorded by {recorded_by}")
        for part in {p.file: p for p in snap.parts()}.values():
            self.report.files_checked += 1
            reason = self.snapshots.parquet.check(part.file, part.sha256, part.size)
            if reason:
                self.problem(part.file, None, reason)
            elif self.report.read_data:
                self._read_part(snap, part.file)
            self._file(key_index_file(part.file), part.keys_sha256, "the part's key index")
        return snap

    def _file(self, rel: str, sha256: str, what: str) -> None:
        """A file the manifest lists by SHA-256 is present and has it."""
        try:
            actual = file_sha256(self.repo.root / rel).hex()
        except FileNotFoundError:
            self.problem(rel, None, f"missing ({what})")
            return
        if actual != sha256:
            self.problem(rel, None, f"SHA-256 differs from the manifest ({what})")

    def _read_part(self, snap: Snapshot, file: str) -> None:
        table = next(t for t in snap.tables.values() if any(p.file == file for p in t.parts))
        try:
            for batch in self.snapshots.parquet.batches(file):
                self.report.rows_read += batch.num_rows
                if self.progress:
                    self.progress(batch.num_rows)
                if table.ref.source == FILESYSTEM:
                    self._file_rows(file, batch.to_pylist())
                else:
                    self._document_rows(file, batch.column("body").to_pylist())
        except HindsightError as exc:
            self.problem(exc.path or file, exc.offset, exc.reason)

    def _document_rows(self, file: str, bodies: list[bytes | None]) -> None:
        for body in bodies:
            if body is None:
                continue  # a tombstone
            try:
                bson.decode(body)
            except Exception as exc:  # bson raises several types for bad input
                self.problem(file, None, f"a document does not decode as BSON: {exc}")

    def _file_rows(self, file: str, rows: list[dict[str, object]]) -> None:
        for row in rows:
            blob, sha = row.get("blob"), row.get("sha256")
            if not row.get("deleted") and isinstance(blob, str) and blob:
                self._blob(blob, str(sha or ""), f"{file} ({row.get('key')})")

    def _blob(self, blob_id: str, sha256: str, used_by: str) -> None:
        if blob_id in self._blobs_seen:
            return
        self._blobs_seen.add(blob_id)
        self.report.blobs_read += 1
        digest = hashlib.sha256()
        try:
            for chunk in self.repo.blobs.open(blob_id):
                digest.update(chunk)
        except HindsightError as exc:
            self.problem(exc.path or "blobs", exc.offset, f"{exc.reason} (used by {used_by})")
            return
        if sha256 and digest.hexdigest() != sha256:
            self.problem("blobs", None, f"blob {blob_id} does not hash to {sha256} ({used_by})")

    # ------------------------------------------------------------------ incremental
    def _incremental(self, backup: Backup) -> None:
        """Its base snapshot, and every journal segment from that snapshot's cut to its own:
        what a restore to it replays, not only the range it recorded."""
        base = self._snapshot(str(backup.point.get("base_snapshot")), None, backup.id)
        first, cut = int(backup.point["first_seq"]), backup.cut_seq
        start = base.cut_seq + 1 if base is not None else first
        log = self.repo.log
        if start < log.first_seq:
            where = f"events {start}..{log.first_seq - 1}"
            self.problem("journal", None, f"{where}, needed to restore it, were pruned")
        own = [s for s in log.manifest.segments if s.last_seq >= first and s.first_seq <= cut]
        checksum = backup.metadata["verification"]["checksum"]
        if segments_checksum((s.name, s.sha256) for s in own) != checksum:
            self.problem("journal/manifest.json", None, "segments differ from those recorded")
        for info in log.manifest.segments:
            if info.last_seq >= start and info.first_seq <= cut:
                self._segment(info.name, info.sha256)
        if self.report.read_data:
            self._read_events(max(start, log.first_seq), cut)

    def _segment(self, name: str, sha256: str) -> None:
        self.report.files_checked += 1
        self._file(f"journal/{name}", sha256, "a journal segment")

    def _read_events(self, first: int, cut: int) -> None:
        try:
            for batch in self.repo.log.read_batches(first, cut):
                self.report.rows_read += len(batch)
                if self.progress:
                    self.progress(len(batch))
                for e in batch:
                    image = e.after if e.source is Source.FILESYSTEM else None
                    if isinstance(image, FileImage) and image.blob:
                        self._blob(image.blob, image.sha256, f"journal seq {e.seq}")
        except HindsightError as exc:
            self.problem(exc.path or "journal", exc.offset, exc.reason)
