"""A restore as asked for (by ``hindsight recover`` or ``POST /api/recovery/restore``): its
target, scope and options, the service that plans it, its plan as a report, and running it.

The CLI and the API both go through here, so a restore means the same thing from either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compaction.backup_maker import Scope
from hindsight.backup_service import BackupService
from hindsight.config import Config
from hindsight.recovery_service import (
    RecoveryService,
    Target,
    documents_dict,
    moment,
    plan_dict,
)
from hindsight.timeparse import parse_time
from hindsight.wiring import open_repository
from journal.errors import ConfigError, JournalLocked, SourceUnavailable
from restore.files import FileItem, FilePlan, Strategy

__all__ = ["STRATEGIES", "RestoreRequest", "open_service", "selected"]

log = logging.getLogger("hindsight.restore")

STRATEGIES = {s.value: s for s in Strategy}


@dataclass(frozen=True)
class RestoreRequest:
    """What to restore, where, and how."""

    backup_id: str | None = None
    at: str | None = None
    to: Path | None = None
    selective: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    to_db: str | None = None
    to_collection: str | None = None
    conflict: str | None = None
    no_rollback: bool = False

    def target(self) -> Target:
        """The backup or moment to restore to."""
        if bool(self.backup_id) == bool(self.at):
            raise ConfigError("give either a BACKUP_ID or --at TIME (not both, not neither)")
        if self.backup_id:
            return Target(backup_id=self.backup_id)
        assert self.at is not None
        return moment(self.at, parse_time)

    def strategy(self, config: Config) -> Strategy:
        """The conflict strategy: the request's, else the configured default."""
        strategy = STRATEGIES.get(self.conflict or config.recovery.conflict_resolution)
        if strategy is None:
            raise ConfigError(
                f"conflict strategy {config.recovery.conflict_resolution!r} is not "
                "available for files yet; pass --conflict skip, overwrite, rename or merge"
            )
        return strategy

    def plan(self, service: RecoveryService) -> tuple[FilePlan, dict[str, Any]]:
        """The plan, and its report (files and documents, sizes, never contents)."""
        cut, plan = service.plan(
            self.target(), to=self.to, selective=self.selective, paths=self.paths,
            to_db=self.to_db, to_collection=self.to_collection, keys=self.keys,
        )  # fmt: skip
        report = plan_dict(cut, plan)
        report["documents"] = {name: docs.counts for name, docs in service.documents.items()}
        report |= documents_dict(service.documents)
        return plan, report

    def run(
        self,
        service: RecoveryService,
        plan: FilePlan,
        report: dict[str, Any],
        progress: Callable[[int], None] | None = None,
        ask: Callable[[FileItem], Strategy] | None = None,
    ) -> dict[str, Any]:
        """Restore ``plan`` (planned by ``plan``); ``report`` with the operation's results."""
        strategy = self.strategy(service.config)
        options = {
            "scope": list(self.selective) or ["filesystem"],
            "paths": list(self.paths),
            "keys": list(self.keys),
            "to_db": self.to_db,
            "to_collection": self.to_collection,
            "at": self.at,
            "to": str(self.to) if self.to else None,
            "dry_run": False,
            "conflict": strategy.value,
        }
        op, results = service.restore(
            self.target(), plan, strategy, options=options,
            rollback_on_failure=not self.no_rollback, progress=progress, ask=ask,
        )  # fmt: skip
        return report | {"operation_id": op.id, "results": results, "conflict": strategy.value}

    def total(self, service: RecoveryService, plan: FilePlan) -> int:
        """Items a restore of ``plan`` goes through: files, then documents (for progress)."""
        documents = sum(len(w) for d in service.documents.values() for w in d.writes.values())
        return len(plan.items) + documents


def open_service(
    config: Config,
    key_file: Path | None,
    *,
    writable: bool = False,
    capture: bool = False,
    warn: Callable[[str], None] = log.warning,
) -> RecoveryService:
    """The service. ``writable`` takes the journal unless the daemon holds it (a restore
    appends its ``restore-start`` marker); ``capture`` then first records the live files and
    documents, so everything a restore overwrites is in the journal (and a rollback can
    bring it back). While the daemon runs, it captures and appends for us."""
    if not (writable or capture):
        return RecoveryService(config, open_repository(config, key_file=key_file))
    try:
        repo = open_repository(config, writable=True, key_file=key_file)
    except JournalLocked:  # the daemon holds the journal and captures by itself
        repo = open_repository(config, key_file=key_file)
    if capture and repo.log.writable:
        backups = BackupService(config, repo)
        backups.capture_now(Scope(("filesystem",)))
        if config.sources.mongodb:
            try:
                backups.capture_now(Scope(("mongodb",)))
            except SourceUnavailable as exc:  # files can still be restored
                warn(str(exc))
    return RecoveryService(config, repo)


def selected(text: str) -> tuple[str, ...]:
    """``--selective a,b`` as names."""
    return tuple(s.strip() for s in text.split(",") if s.strip())
