"""The brief's RecoveryService, for files: preview and restore to a backup or a moment.

A target is a backup id (its cut) or a moment (``restore.moment``); the state there is the
nearest snapshot plus the events after it (``compaction.state_at``). Files go back in place
(the configured roots) or under ``--to DIR/<root>``. MongoDB restores are not built yet and
say so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compaction.backup_maker import CONFIG_FILES
from compaction.state_at import state_at
from hindsight.backup_service import BackupService
from hindsight.config import Config
from journal.errors import ConfigError
from journal.events import FileImage
from journal.repository import Repository
from restore.files import Action, FilePlan, Strategy, apply_files, plan_files
from restore.moment import cut_at

__all__ = ["RecoveryService", "Target", "moment", "plan_dict"]

FILE_SCOPES = ("filesystem", "config")


@dataclass(frozen=True)
class Target:
    """What to restore to: a backup, or a moment (UTC microseconds) and how it was given."""

    backup_id: str | None = None
    moment_us: int | None = None
    text: str = ""


class RecoveryService:
    """Preview and restore files of one opened repository under one config."""

    def __init__(self, config: Config, repo: Repository) -> None:
        self.config, self.repo = config, repo
        self.backups = BackupService(config, repo)
        self.snapshots = self.backups.snapshots

    def cut(self, target: Target) -> int:
        """The journal seq the target names."""
        if target.backup_id is not None:
            return self.backups.get(target.backup_id).cut_seq
        assert target.moment_us is not None
        return cut_at(self.snapshots, self.repo.log, target.moment_us, target.text)

    def plan(
        self,
        target: Target,
        *,
        to: Path | None = None,
        selective: Sequence[str] = (),
        paths: Sequence[str] = (),
    ) -> tuple[int, FilePlan]:
        """The cut and what restoring its files would do."""
        roots = self._roots(selective)
        globs = list(paths) + (list(CONFIG_FILES) if _only_config(selective) else [])
        cut = self.cut(target)
        at = state_at(self.snapshots, self.repo.log, cut)
        head = state_at(self.snapshots, self.repo.log, self.repo.log.next_seq - 1)
        targets = {name: (to / name if to else path) for name, path in roots.items()}
        plan = plan_files(
            at, head, targets, in_place=to is None, paths=globs, sha256_of=self._sha256
        )
        return at.cut_seq, plan

    def restore(
        self,
        plan: FilePlan,
        strategy: Strategy,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Carry out a plan; what was restored, deleted, skipped, renamed and failed."""
        stamp = datetime.now(UTC).strftime("restored-%Y%m%d_%H%M%S")
        results = apply_files(plan, self.repo.blobs, strategy, suffix=stamp, progress=progress)
        return {
            "restored": results.restored,
            "deleted": results.deleted,
            "skipped": results.skipped,
            "renamed": results.renamed,
            "merged": results.merged,
            "failed": results.failed,
        }

    def _roots(self, selective: Sequence[str]) -> dict[str, Path]:
        roots = {s.name: s.path for s in self.config.sources.filesystem}
        names = [s for s in selective if s not in FILE_SCOPES]
        mongo = {s.name for s in self.config.sources.mongodb}
        unknown = [n for n in names if n not in roots]
        if unknown:
            hint = " (restoring MongoDB is not available yet)" if set(unknown) & mongo else ""
            raise ConfigError(
                f"--selective {', '.join(unknown)}: not a protected root{hint}; use "
                f"{', '.join([*roots, *FILE_SCOPES]) or 'a [[sources.filesystem]] name'}"
            )
        return {n: roots[n] for n in names} if names else roots

    def _sha256(self, image: FileImage) -> str:
        return image.sha256 or self.repo.blobs.stat(image.blob).sha256


def _only_config(selective: Sequence[str]) -> bool:
    return "config" in selective and "filesystem" not in selective


def plan_dict(cut: int, plan: FilePlan) -> dict[str, Any]:
    """A plan as JSON-ready data (sizes, never contents)."""
    return {
        "cut_seq": cut,
        "counts": plan.counts(),
        "bytes": {a.value: plan.bytes(a) for a in Action},
        "items": [
            {"root": i.root, "path": i.path, "action": i.action.value, "size": i.size}
            for i in plan.items
        ],
    }


def moment(text: str, parse: Callable[[str], int]) -> Target:
    """A target from a ``--at`` text."""
    return Target(moment_us=parse(text), text=f"--at {text!r}")
