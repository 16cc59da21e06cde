"""What a scan reports: findings, where a good version can be had, and what to run.

A *finding* is one thing wrong with protected data: a file lost or corrupted, a collection
missing, documents gone. Each names its restore points (``RestorePoint``: backups, a moment
for ``recover restore --at``, a git commit), newest first, and, when there is one, the
command that brings the newest good version back.
"""

from __future__ import annotations

import fnmatch
import shlex
from dataclasses import dataclass, field

from compaction.backup_maker import CONFIG_FILES

__all__ = [
    "CORRUPTED_KINDS",
    "KNOWLEDGE_BASE",
    "LOST_KINDS",
    "Finding",
    "RestorePoint",
    "file_type",
    "matches",
    "recommendation",
]

KNOWLEDGE_BASE = (
    "conocimiento_consolidado.json",
    "base_conocimiento_*.json",
    "kb_populated_*.json",
    "catalogo*.json",
    "*catalog*.json",
    "productos*.json",
)
"""The brief's knowledge base files and product catalogs (``type`` ``knowledge_base``)."""

LOST_KINDS = frozenset({"missing", "deleted", "expected_missing", "git_only"})
CORRUPTED_KINDS = frozenset({"silent_change", "bit_rot", "truncated", "unparseable"})


@dataclass(frozen=True)
class RestorePoint:
    """One place a good version can be had; ``label`` is what ``recoverable_from`` lists."""

    kind: str  # "backup", "at" or "git"
    label: str  # a backup id, an ISO time for --at, or git:<commit>
    time_us: int


@dataclass
class Finding:
    """One thing wrong, where a good version is, and how it was found (``reason``)."""

    source: str  # "filesystem", "git" or "mongodb"
    kind: str  # e.g. "missing", "silent_change", "collection_missing", "bulk_delete"
    where: str  # the root, or the deployment
    path: str  # root-relative path, or db.coll
    reason: str
    type: str  # "knowledge_base", "config", "file", "collection" or "deployment"
    last_seen_us: int | None = None
    points: list[RestorePoint] = field(default_factory=list)
    git_top: str = ""  # git findings: the work tree, and the path relative to it
    git_path: str = ""

    @property
    def lost(self) -> bool:
        """A file that is gone (else: corrupted, or a database finding)."""
        return self.kind in LOST_KINDS

    @property
    def corrupted(self) -> bool:
        return self.kind in CORRUPTED_KINDS


def matches(path: str, globs: tuple[str, ...] | list[str]) -> bool:
    """A glob with ``/`` matches the root-relative path, one without it the file name (as
    ``recover restore --path`` and the config do)."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in g else name, g) for g in globs)


def file_type(path: str, expected: tuple[str, ...] = ()) -> str:
    """``knowledge_base``, ``config`` or ``file``: what kind of file ``path`` is."""
    if matches(path, KNOWLEDGE_BASE) or matches(path, expected):
        return "knowledge_base"
    return "config" if matches(path, CONFIG_FILES) else "file"


def recommendation(finding: Finding, several_roots: bool) -> str | None:
    """The command that restores the newest good version, or None when there is none."""
    if not finding.points:
        return None
    point = finding.points[0]
    if point.kind == "git":
        commit = point.label.removeprefix("git:")
        return (
            f"git -C {shlex.quote(finding.git_top)} checkout {commit} -- "
            f"{shlex.quote(finding.git_path)}"
        )
    target = point.label if point.kind == "backup" else f"--at {point.label}"
    if finding.source == "mongodb":
        return f"hindsight recover restore {target} --selective {shlex.quote(finding.path)}"
    argv = f"hindsight recover restore {target} --path {shlex.quote(finding.path)}"
    if several_roots:
        argv += f" --selective {shlex.quote(finding.where)}"
    if finding.corrupted:
        argv += " --conflict overwrite"  # the damaged file is not in the journal: replace it
    return argv
