"""The brief's BackupService: backups, verification, pruning and storage for one repository.

It wires compaction's parts to the config and to capture: a snapshot carries capture's
MongoDB resume positions (``MongoResume``), and the known state of files and databases is
rebuilt from the newest snapshot plus the journal after it (``rebuild_known``), so the
journal can be pruned without capture losing its place. The CLI, the daemon's schedules and
(later) the HTTP API all call this one class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from capture.filesystem import FileCapture, ScanSummary
from capture.mongo_state import KnownMongo
from capture.state import KnownFiles
from compaction.backup_maker import BackupMaker, Scope
from compaction.backup_verify import VerifyReport, verify_backup
from compaction.backups import FULL, INCREMENTAL, Backup, BackupCatalog
from compaction.history import HistoryExport
from compaction.prune import Pruner, PruneReport
from compaction.retention import RetentionPolicy, TypePolicy, parse_duration
from compaction.snapshots import Snapshots, snapshots_of
from compaction.storage import StorageReport, measure, parse_size
from hindsight.config import Config
from hindsight.timeparse import parse_time
from hindsight.wiring import file_roots, mongo_captures
from journal.errors import ConfigError, CorruptionError, HindsightError
from journal.events import ChangeEvent, Source
from journal.repository import Repository

__all__ = [
    "BackupService",
    "CreateResult",
    "MongoResume",
    "create_result_dict",
    "prune_dict",
    "rebuild_known",
    "retention_policy",
    "verify_dict",
]

log = logging.getLogger("hindsight.backup")

Progress = Callable[[int], None]


class MongoResume:
    """Capture's MongoDB resume state, carried in every snapshot (a ``SideState``)."""

    name = "capture.mongodb"

    def __init__(self) -> None:
        self.known = KnownMongo()

    def load(self, doc: Any) -> None:
        self.known.load(doc)

    def apply(self, event: ChangeEvent) -> None:
        self.known.apply(event)

    def dump(self) -> Any:
        return self.known.dump()


def job_history_path(repo: Repository) -> Path:
    """Where the daemon keeps its scheduled jobs' history."""
    return repo.root / "schedule" / "history.json"


def rebuild_known(
    repo: Repository, snapshots: Snapshots, files: KnownFiles, mongo: KnownMongo
) -> int:
    """Fill ``files`` and ``mongo`` with what the journal says exists; returns events replayed.

    Starts from the newest snapshot when there is one (the only way once old segments are
    pruned), then replays the journal after its cut.
    """
    latest = snapshots.catalog.latest()
    start = 1
    if latest is not None:
        mongo.load(latest.state.get(MongoResume.name))
        files.apply_all(snapshots.events(latest, sources=(Source.FILESYSTEM,)))
        start = latest.cut_seq + 1
    if start < repo.log.first_seq:
        raise CorruptionError(
            f"the journal starts at seq {repo.log.first_seq} but the newest snapshot ends at "
            f"{start - 1}: events in between are missing; run `hindsight backup verify`",
            path="journal",
        )
    replayed = 0
    for batch in repo.log.read_batches(start):
        for event in batch:
            files.apply(event)
            mongo.apply(event)
        replayed += len(batch)
    return replayed


def retention_policy(config: Config) -> RetentionPolicy:
    """The configured policy as compaction's value object."""
    r = config.backup.retention

    def of(t: Any) -> TypePolicy:
        return TypePolicy(
            keep_last=t.keep_last,
            keep_hourly=t.keep_hourly,
            keep_daily=t.keep_daily,
            keep_weekly=t.keep_weekly,
            keep_monthly=t.keep_monthly,
            keep_yearly=t.keep_yearly,
            keep_within_s=parse_duration(t.keep_within),
        )

    return RetentionPolicy(of(r.full), of(r.incremental), parse_duration(r.point_in_time))


@dataclass
class CreateResult:
    """What ``create`` did."""

    backup: Backup
    requested: str
    captured: dict[str, Any] = field(default_factory=dict)
    verification: VerifyReport | None = None
    pruned: PruneReport | None = None
    notes: list[str] = field(default_factory=list)


class BackupService:
    """Backups of one opened repository under one config."""

    def __init__(self, config: Config, repo: Repository) -> None:
        self.config, self.repo = config, repo
        self.snapshots = snapshots_of(repo)
        self.catalog = BackupCatalog(repo.root, repo.store, repo.record_cipher)
        self.history = HistoryExport.of(repo)
        self.maker = BackupMaker(repo, self.snapshots, self.catalog)
        self.damaged: list[HindsightError] = []  # records ``find`` could not read

    # ------------------------------------------------------------------ create
    def create(
        self,
        type_: str,
        scope: Scope,
        *,
        capture: bool = True,
        seal: Callable[[], None] | None = None,
        progress: Progress | None = None,
    ) -> CreateResult:
        """Capture (unless a daemon already does), then take the backup, verify, export.

        An incremental backup with no full backup to build on is taken as a full one.
        """
        captured = self.capture_now(scope) if capture else {}
        with self.catalog.locked():
            result = self._take(type_, scope, seal, progress)
            result.captured = captured
            if self.config.backup.verify_after_backup:
                result.verification = self.verify(result.backup.id, locked=False)
                result.backup = self.catalog.get(result.backup.id)  # with the result recorded
            if self.repo.log.writable:
                self.history.export()
            self._enforce_quota(result)
        return result

    def _take(
        self, type_: str, scope: Scope, seal: Callable[[], None] | None, progress: Progress | None
    ) -> CreateResult:
        if type_ == INCREMENTAL:
            backup = self.maker.incremental(scope, seal)
            if backup is not None:
                return CreateResult(backup, type_)
        backup = self.maker.full(scope, [MongoResume()], progress)
        result = CreateResult(backup, type_)
        if type_ == INCREMENTAL:
            result.notes.append("no full backup to build on yet: took a full backup instead")
        return result

    def capture_now(self, scope: Scope) -> dict[str, Any]:
        """A reconciling scan of the roots in scope and a sync of the databases in scope."""
        files, mongo = KnownFiles(), KnownMongo()
        rebuild_known(self.repo, self.snapshots, files, mongo)
        roots = file_roots(self.config) if scope.files else []
        summary = ScanSummary()
        if roots:
            summary = FileCapture(roots, self.repo.log, self.repo.blobs, files).scan()
            self.repo.blobs.flush()
        synced = {}
        if scope.mongodb:
            for deployment in mongo_captures(self.config, self.repo.log, mongo):
                with deployment:
                    synced[deployment.target.name] = dataclasses.asdict(deployment.sync())
        return {
            **dataclasses.asdict(summary),
            "problems": [p._asdict() for p in summary.problems],
            "roots": [r.name for r in roots],
            "mongodb": synced,
        }

    # ------------------------------------------------------------------ inspect
    def find(self, filters: Sequence[str] = ()) -> list[Backup]:
        """Backups matching every filter: ``last_7_days`` (``last_N_days``), ``type=full``,
        ``since=TIME`` (ISO-8601 or a duration ago), oldest first."""
        tests = [_filter(f) for f in filters]  # a bad filter fails even with no backups
        backups, self.damaged = self.catalog.readable()
        return [b for b in backups if all(t(b) for t in tests)]

    def get(self, backup_id: str) -> Backup:
        return self.catalog.get(backup_id)

    def verify(
        self,
        backup_id: str,
        *,
        read_data: bool = False,
        progress: Progress | None = None,
        locked: bool = True,
    ) -> VerifyReport:
        """Check one backup and record the result in its metadata."""
        backup = self.catalog.get(backup_id)
        with self.catalog.locked() if locked else contextlib.nullcontext():
            return verify_backup(
                self.repo, self.snapshots, self.catalog, backup, read_data=read_data,
                progress=progress,
            )  # fmt: skip

    def newest_per_type(self) -> list[Backup]:
        """The newest full and the newest incremental backup (those that exist)."""
        newest = [self.catalog.latest(FULL), self.catalog.latest(INCREMENTAL)]
        return [b for b in newest if b is not None]

    def storage(self, *, ratios: bool = True) -> StorageReport:
        """Bytes by kind and the quota; with ``ratios`` also compression and dedup."""
        return measure(self.repo, self.snapshots, self.quota_bytes, ratios=ratios)

    @property
    def quota_bytes(self) -> int:
        size = self.config.storage.local.max_size
        return parse_size(size) if size else 0

    # ------------------------------------------------------------------ remove
    def pruner(self) -> Pruner:
        return Pruner(
            self.repo,
            self.snapshots,
            self.catalog,
            retention_policy(self.config),
            history=self.history,
        )

    def prune(self, *, dry_run: bool = False) -> PruneReport:
        """Apply the retention policy and free what nothing kept needs."""
        with self.catalog.locked():
            return self.pruner().prune(dry_run=dry_run)

    def delete(self, backup_id: str, *, force: bool = False, dry_run: bool = False) -> PruneReport:
        """Delete one backup (refused if a kept one depends on it, unless ``force``)."""
        with self.catalog.locked():
            return self.pruner().delete(backup_id, force=force, dry_run=dry_run)

    def _enforce_quota(self, result: CreateResult) -> None:
        """After a backup (the catalog lock is held)."""
        result.notes += self._quota_check(result)

    def enforce_quota(self) -> list[str]:
        """Over quota: the alert notes (also logged), after pruning by the retention policy."""
        with self.catalog.locked():
            return self._quota_check(None)

    def _quota_check(self, result: CreateResult | None) -> list[str]:
        if not self.quota_bytes or not self.repo.log.writable:
            return []
        usage = self.storage(ratios=False)
        if not usage.over_quota:
            return []
        notes = [
            f"ALERT: the repository uses {usage.total} bytes, over its quota of "
            f"{self.quota_bytes} (storage.local.max_size); pruning by the retention policy"
        ]
        log.warning(notes[0])
        pruned = self.pruner().prune()
        if result is not None:
            result.pruned = pruned
        after = self.storage(ratios=False)
        if after.over_quota:
            notes.append(
                f"ALERT: still over quota after pruning ({after.total} bytes): keep fewer "
                "backups, shorten backup.retention.point_in_time, or raise the quota"
            )
            log.error(notes[-1])
        return notes


def _filter(text: str) -> Callable[[Backup], bool]:
    """The test one ``--filter`` stands for."""
    name, _, value = text.partition("=")
    if name == "type" and value in (FULL, INCREMENTAL):
        return lambda b: b.type == value
    if name == "since" and value:
        since = parse_time(value)
        return lambda b: b.created_us >= since
    days = name.removeprefix("last_").removesuffix("_days")
    if name == f"last_{days}_days" and days.isdigit() and not value:
        cutoff = int((datetime.now(UTC) - timedelta(days=int(days))).timestamp() * 1e6)
        return lambda b: b.created_us >= cutoff
    raise ConfigError(
        f"unknown filter {text!r}; use last_N_days (e.g. last_7_days), type=full, "
        "type=incremental or since=TIME (e.g. since=2025-11-28T12:00:00Z, since=2d)"
    )


# --- plain data for --json, the daemon's control answers and the API ------------------------


def create_result_dict(result: CreateResult) -> dict[str, Any]:
    """``CreateResult`` as JSON-ready data."""
    return {
        "backup": result.backup.metadata,
        "requested_type": result.requested,
        "captured": result.captured,
        "verification": verify_dict(result.verification) if result.verification else None,
        "pruned": prune_dict(result.pruned) if result.pruned else None,
        "notes": result.notes,
    }


def verify_dict(report: VerifyReport) -> dict[str, Any]:
    """``VerifyReport`` as JSON-ready data."""
    return {
        "backup_id": report.backup_id,
        "ok": report.ok,
        "read_data": report.read_data,
        "files_checked": report.files_checked,
        "rows_read": report.rows_read,
        "blobs_read": report.blobs_read,
        "problems": [p._asdict() for p in report.problems],
    }


def prune_dict(report: PruneReport) -> dict[str, Any]:
    """``PruneReport`` as JSON-ready data."""
    return {**dataclasses.asdict(report), "total_freed": report.total_freed}
