"""The repository's status as one dict: what ``hindsight status --json`` prints and what
``GET /api/status`` answers."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from typing import Any

from compaction.schedule import JobHistory, Schedule, utc_now
from hindsight.alert_conditions import conditions
from hindsight.backup_service import BackupService, job_history_path
from hindsight.config import Config
from hindsight.daemon_state import read_state
from hindsight.scan_service import last_scan
from hindsight.wiring import alert_settings
from journal.errors import AuthError, CorruptionError
from journal.repository import Repository
from restore.operations import OperationCatalog

__all__ = ["epoch_of", "status_report"]


def status_report(config: Config, repo: Repository) -> dict[str, Any]:
    """Journal, file store, checkpoints, backups, schedules, sources, the daemon and its
    capture, the newest recovery operation, and the alert conditions that hold now."""
    daemon = read_state(repo.root)
    report = {
        "config": str(config.path),
        "repository": str(repo.root),
        "repository_id": repo.id,
        "encrypted": repo.encrypted,
        "mode": repo.mode,
        "journal": repo.log.stats()._asdict(),
        "blobs": dataclasses.asdict(repo.blobs.stats()),
        "checkpoints": repo.checkpoints.all(),
        "backups": _backups(config, repo),
        "jobs": _jobs(config, repo),
        "sources": {
            "filesystem": [str(s.path) for s in config.sources.filesystem],
            "mongodb": [s.redacted_uri for s in config.sources.mongodb],
        },
        "daemon": {
            k: daemon[k] for k in ("running", "pid", "started_at", "updated_at") if k in daemon
        },
        "capture": daemon.get("capture", []) if daemon["running"] else [],
        **_recoveries(repo),
        "last_scan": (scan := last_scan(repo.root)),
        "scan_findings": scan["findings"] if scan else None,
    }
    now = time.time()
    report["alerts"] = [
        dataclasses.asdict(a) for a in conditions(report, alert_settings(config), now)
    ]
    return report


def _recoveries(repo: Repository) -> dict[str, Any]:
    """``recoveries``: operations by status (completed, failed, ...); ``last_recovery``: the
    newest one's record (None before the first). Every record is read once."""
    catalog = OperationCatalog(repo.root, repo.store, repo.record_cipher)
    counts: dict[str, int] = {}
    record: dict[str, Any] | None = None
    for op_id in catalog.ids():
        try:
            record = catalog.get(op_id).record
        except (CorruptionError, AuthError) as exc:
            record = {"operation_id": op_id, "status": "unreadable", "errors": [str(exc)]}
        status = str(record.get("status", "unknown"))
        counts[status] = counts.get(status, 0) + 1
    return {"last_recovery": record, "recoveries": counts}


def _backups(config: Config, repo: Repository) -> dict[str, Any]:
    """The newest backup of each type, with its age, and how many there are."""
    service = BackupService(config, repo)
    now = time.time()
    newest = {
        b.type: {**b.metadata, "age_s": round(now - epoch_of(b.metadata["timestamp"]))}
        for b in service.newest_per_type()
    }
    storage = service.storage(ratios=False).to_dict()
    return {"count": len(service.catalog.ids()), "newest": newest, "storage": storage}


def epoch_of(timestamp: str) -> float:
    """An ISO-8601 time as the status shows them (UTC, with a ``Z``) as epoch seconds."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _jobs(config: Config, repo: Repository) -> list[dict[str, Any]]:
    """Each scheduled job: cron, last run (start, end, result, error) and next due time."""
    schedules = [
        Schedule(name, cron)
        for name, cron in dataclasses.asdict(config.backup.schedule).items()
        if cron
    ]
    try:
        history = JobHistory(job_history_path(repo))
    except CorruptionError as exc:  # the daemon moves it aside and starts afresh
        return [{"job": "*", "cron": "", "last": None, "next_due": None, "error": str(exc)}]
    return [s.as_dict() for s in history.summary(schedules, now=utc_now())]
