"""Taking backups: a full one (a snapshot now) or an incremental one (a sealed range).

Capture itself is continuous and not done here: the caller captures first (a scan, a sync)
when no daemon is running. Scopes (``mongodb``, ``filesystem``, ``config``) say what the
backup is *of*: they limit the metadata and, later, what a restore of it brings back by
default. The snapshot itself always covers everything, so that the next one stays
incremental.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from compaction.backups import (
    FULL,
    INCREMENTAL,
    Backup,
    BackupCatalog,
    iso_time,
    segments_checksum,
    snapshot_checksum,
)
from compaction.builder import SideState
from compaction.snapshot import SNAPSHOT_DIR, Snapshot
from compaction.snapshots import Snapshots
from compaction.tables import FILESYSTEM, MONGODB
from journal.events import ChangeEvent, FileImage, Source, now_us
from journal.repository import Repository

__all__ = ["CONFIG_FILES", "SCOPES", "BackupMaker", "Scope"]

SCOPES = ("mongodb", "filesystem", "config")
CONFIG_FILES = (
    ".env",
    ".env.*",
    "config.py",
    "settings.py",
    "package.json",
    "requirements.txt",
    "pyproject.toml",
    "*.toml",
    "*.ini",
    "*.yaml",
    "*.yml",
    "*.cfg",
)


@dataclass(frozen=True)
class Scope:
    """What a backup is of; ``config`` means the configuration files among protected files."""

    parts: tuple[str, ...] = SCOPES
    config_files: tuple[str, ...] = CONFIG_FILES

    @property
    def mongodb(self) -> bool:
        return "mongodb" in self.parts

    def wants_file(self, path: str) -> bool:
        """Whether a protected file's path is in scope."""
        if "filesystem" in self.parts:
            return True
        name = path.rsplit("/", 1)[-1]
        return "config" in self.parts and any(fnmatch.fnmatch(name, g) for g in self.config_files)

    @property
    def files(self) -> bool:
        """Whether any protected file is in scope."""
        return "filesystem" in self.parts or "config" in self.parts

    @property
    def only_config(self) -> bool:
        return "filesystem" not in self.parts and "config" in self.parts


@dataclass
class _Tally:
    """Counts for the metadata: documents per collection, files, bytes."""

    collections: Counter[str] = field(default_factory=Counter)
    files: int = 0
    file_bytes: int = 0
    document_bytes: int = 0


class BackupMaker:
    """Creates backups in one repository (the caller holds ``catalog.locked()``)."""

    def __init__(
        self,
        repo: Repository,
        snapshots: Snapshots,
        catalog: BackupCatalog,
        *,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.repo, self.snapshots, self.catalog, self.clock = repo, snapshots, catalog, clock

    # ------------------------------------------------------------------ full
    def full(
        self,
        scope: Scope,
        side: Sequence[SideState] = (),
        progress: Callable[[int], None] | None = None,
    ) -> Backup:
        """Snapshot everything up to the journal's head and record it as a full backup."""
        previous = self.snapshots.catalog.latest()
        snap = self.snapshots.take(self.repo.log, side, progress=progress, clock=self.clock)
        tally = self._tally_snapshot(snap, scope)
        known = {p.file for p in previous.parts()} if previous else set()
        parts = {p.file: p.size for p in snap.parts() if p.file not in known}
        blob_bytes = self.repo.blobs.stats().stored_bytes
        backup_id, created = self.catalog.new_id(self.clock())
        manifest = self.repo.root / f"{SNAPSHOT_DIR}/{snap.id}.json"
        point = {
            "cut_seq": snap.cut_seq,
            "cut_us": snap.cut_us,
            "created_us": created,
            "snapshot": snap.id,
            "base": None,
            "first_seq": 1,
            "blob_bytes": blob_bytes,
        }
        stored = sum(parts.values()) + self._blob_growth(blob_bytes)
        backup = self._record(backup_id, FULL, scope, tally, stored, snapshot_checksum(snap))
        backup.metadata["storage"] = {"location": "local", "path": str(manifest)}
        backup.point = point
        self.catalog.save(backup)
        return backup

    def _tables(self, snap: Snapshot, scope: Scope) -> list[Any]:
        return [
            t
            for t in snap.tables.values()
            if (t.ref.source == MONGODB and scope.mongodb)
            or (t.ref.source == FILESYSTEM and scope.files)
        ]

    def _tally_snapshot(self, snap: Snapshot, scope: Scope) -> _Tally:
        tally = _Tally()
        deployments = {t.ref.deployment for t in snap.tables.values() if t.ref.source == MONGODB}
        for table in self._tables(snap, scope):
            if table.ref.source == MONGODB:
                name = _collection_name(table.ref.deployment, table.ref.namespace, deployments)
                tally.collections[name] = table.rows
                tally.document_bytes += table.bytes
            elif not scope.only_config:
                tally.files += table.rows
                tally.file_bytes += table.bytes
            else:
                for batch in self.snapshots.rows(table, columns=["size"]):
                    rows = zip(batch["key"].to_pylist(), batch["size"].to_pylist(), strict=True)
                    for key, size in rows:
                        if scope.wants_file(key):
                            tally.files += 1
                            tally.file_bytes += size
        return tally

    def _blob_growth(self, blob_bytes: int) -> int:
        """File-content bytes stored since the previous backup (0 if pruning shrank them)."""
        previous = self.catalog.latest()
        before = int(previous.point.get("blob_bytes", 0)) if previous else 0
        return max(0, blob_bytes - before)

    # ------------------------------------------------------------------ incremental
    def incremental(self, scope: Scope, seal: Callable[[], None] | None = None) -> Backup | None:
        """Seal the journal and record the events since the previous backup.

        Returns None when there is no full backup to build on yet (the caller takes a full
        one instead). ``seal`` defaults to sealing through this process's writable log.
        """
        base = self.catalog.latest(FULL)
        if base is None:
            return None
        (seal or self.repo.log.seal)()
        if not self.repo.log.writable:
            self.repo.log.refresh()  # another process sealed
        cut = self.repo.log.next_seq - 1
        previous = self.catalog.latest()
        first = (previous.cut_seq if previous else 0) + 1
        tally = _Tally()
        cut_us = int(previous.point["cut_us"]) if previous else 0
        if cut >= first:
            tally, cut_us = _tally_events(self.repo.log.read(first, cut), scope)
        backup_id, created = self.catalog.new_id(self.clock())
        segments = [
            s for s in self.repo.log.manifest.segments if s.last_seq >= first and s.first_seq <= cut
        ]
        checksum = segments_checksum((s.name, s.sha256) for s in segments)
        blob_bytes = self.repo.blobs.stats().stored_bytes
        stored = self._blob_growth(blob_bytes) + sum(s.size for s in segments)
        backup = self._record(backup_id, INCREMENTAL, scope, tally, stored, checksum)
        backup.metadata["storage"] = {
            "location": "local",
            "path": str(self.repo.root / "journal"),
        }
        backup.point = {
            "cut_seq": cut,
            "cut_us": cut_us,
            "created_us": created,
            "snapshot": None,
            "base": base.id,
            "base_snapshot": base.point["snapshot"],
            "blob_bytes": blob_bytes,
            "first_seq": first,
        }
        self.catalog.save(backup)
        return backup

    # ------------------------------------------------------------------ shared
    def _record(
        self,
        backup_id: str,
        type_: str,
        scope: Scope,
        tally: _Tally,
        stored: int,
        checksum: str,
    ) -> Backup:
        metadata = {
            "backup_id": backup_id,
            "timestamp": iso_time(self.clock()),
            "type": type_,
            "scope": list(scope.parts),
            "size": tally.document_bytes + tally.file_bytes,
            "compressed_size": stored,
            "encrypted": self.repo.encrypted,
            "collections": dict(sorted(tally.collections.items())),
            "files": {"count": tally.files, "total_size": tally.file_bytes},
            "verification": {"checksum": checksum, "verified": False, "verified_at": None},
            "storage": {},
        }
        return Backup(metadata, {})


def _collection_name(deployment: str, namespace: str, deployments: set[str]) -> str:
    """``db.coll``, prefixed with the deployment when several are protected."""
    return f"{deployment}/{namespace}" if len(deployments) > 1 else namespace


def _tally_events(events: Iterable[ChangeEvent], scope: Scope) -> tuple[_Tally, int]:
    """What changed in a range (distinct documents per collection, distinct files), and
    the capture time of its last event."""
    docs: dict[str, dict[str, int]] = {}
    files: dict[tuple[str, str], int] = {}
    last_us = 0
    for e in events:
        last_us = e.capture_ts
        if e.source is Source.MONGODB and scope.mongodb and e.key:
            deployment = (e.meta or {}).get("deployment", "")
            size = len(e.after) if isinstance(e.after, bytes) else 0
            docs.setdefault(f"{deployment}\0{e.namespace}", {})[e.key] = size
        elif e.source is Source.FILESYSTEM and scope.wants_file(e.key):
            image = e.after if isinstance(e.after, FileImage) else None
            files[(e.namespace, e.key)] = image.size if image else 0
    deployments = {k.split("\0")[0] for k in docs}
    tally = _Tally(files=len(files), file_bytes=sum(files.values()))
    for key, changed in docs.items():
        deployment, namespace = key.split("\0")
        tally.collections[_collection_name(deployment, namespace, deployments)] = len(changed)
        tally.document_bytes += sum(changed.values())
    return tally, last_us
