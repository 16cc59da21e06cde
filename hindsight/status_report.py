"""The repository's status as one dict: what ``hindsight status --json`` prints and what
``GET /api/status`` answers."""

from __future__ import annotations

import dataclasses
from typing import Any

from compaction.schedule import JobHistory, Schedule, utc_now
from hindsight.backup_service import BackupService, job_history_path
from hindsight.config import Config
from journal.errors import CorruptionError
from journal.repository import Repository

__all__ = ["status_report"]


def status_report(config: Config, repo: Repository) -> dict[str, Any]:
    """Journal, file store, checkpoints, backups, schedules and sources of ``repo``."""
    return {
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
    }


def _backups(config: Config, repo: Repository) -> dict[str, Any]:
    """The newest backup of each type, with its age, and how many there are."""
    service = BackupService(config, repo)
    newest = {b.type: b.metadata for b in service.newest_per_type()}
    storage = service.storage(ratios=False).to_dict()
    return {"count": len(service.catalog.ids()), "newest": newest, "storage": storage}


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
