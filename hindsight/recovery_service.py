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
from restore.files import Action, FilePlan, FileResults, Strategy, apply_files, plan_files
from restore.moment import cut_at
from restore.operations import COMPLETED, FAILED, IN_PROGRESS, Operation, OperationCatalog

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
        cipher = repo.codec.cipher if repo.encrypted else None
        self.operations = OperationCatalog(repo.root, repo.store, cipher)

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
        target: Target,
        plan: FilePlan,
        strategy: Strategy,
        *,
        options: dict[str, Any],
        rollback_on_failure: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[Operation, dict[str, Any]]:
        """Carry out a plan under an operation record; a failure part-way rolls back what
        was written unless ``rollback_on_failure`` is False (then the rest stays restored)."""
        op = self.operations.new(target.backup_id, options, self.repo.log.next_seq - 1)
        op.record["status"] = IN_PROGRESS
        self.operations.save(op)
        stamp = datetime.now(UTC).strftime("restored-%Y%m%d_%H%M%S")
        results = apply_files(plan, self.repo.blobs, strategy, suffix=stamp, progress=progress)
        op.touched = _touched(results)
        errors = [f"{path}: {why}" for path, why in results.failed.items()]
        report = _results(results)
        if results.failed and rollback_on_failure and options.get("to") is None:
            rolled = self._rollback(op)
            errors.append(f"rolled back {len(rolled['restored']) + len(rolled['deleted'])} files")
            report["rolled_back"] = rolled
        status = FAILED if results.failed else COMPLETED
        self.operations.finish(op, status, _counts(results), errors)
        return op, report

    def rollback(self, op_id: str) -> dict[str, Any]:
        """Return every file an in-place restore touched to its state before it."""
        op = self.operations.get(op_id)
        if op.record["options"].get("to") is not None:
            raise ConfigError(
                f"{op_id} restored into {op.record['options']['to']}, not in place: delete "
                "that directory to undo it"
            )
        return self._rollback(op)

    def _rollback(self, op: Operation) -> dict[str, Any]:
        roots = {s.name: s.path for s in self.config.sources.filesystem}
        before = state_at(self.snapshots, self.repo.log, op.before_seq)
        head = state_at(self.snapshots, self.repo.log, self.repo.log.next_seq - 1)
        touched = set(op.touched)
        plan = plan_files(before, head, roots, in_place=True, only=touched, sha256_of=self._sha256)
        results = apply_files(plan, self.repo.blobs, Strategy.OVERWRITE, suffix="rollback")
        existed = {f"{i.root}/{i.path}" for i in plan.items}
        for key in sorted(touched - existed):  # written by the restore, absent before it
            root, _, path = key.partition("/")
            live = roots.get(root, Path("/nonexistent")) / path
            if live.is_file() or live.is_symlink():
                live.unlink()
                results.deleted.append(key)
        return _results(results)

    def history(self) -> list[dict[str, Any]]:
        """Every recovery operation's record, oldest first."""
        return [self.operations.get(i).record for i in self.operations.ids()]

    def status(self, op_id: str) -> dict[str, Any]:
        return self.operations.get(op_id).record

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


def _touched(results: FileResults) -> list[str]:
    """Every file a restore wrote or deleted, as ``<root>/<path>``."""
    beside = []
    for line in results.renamed:  # "<root>/<path> -> <new name>"
        source, _, name = line.partition(" -> ")
        beside.append(f"{source.rsplit('/', 1)[0]}/{name}")
    return sorted([*results.restored, *results.deleted, *results.merged, *beside])


def _results(results: FileResults) -> dict[str, Any]:
    return {
        "restored": results.restored,
        "deleted": results.deleted,
        "skipped": results.skipped,
        "renamed": results.renamed,
        "merged": results.merged,
        "failed": results.failed,
    }


def _counts(results: FileResults) -> dict[str, int]:
    """The brief's ``results``: restored, failed, skipped, conflicts."""
    return {
        "restored": len(results.restored) + len(results.deleted),
        "failed": len(results.failed),
        "skipped": len(results.skipped),
        "conflicts": len(results.renamed) + len(results.merged),
    }


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
