"""Identical content among protected files, from the SHA-256 the journal already holds.

A file whose stat (and ctime, where recorded) matches its last captured version has that
version's SHA-256 and is not read; only files changed since their capture, or never
captured, are hashed. Empty files are left out: they are all alike and cost nothing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from query.scan_files import RootInput, same_stat, sha256_file
from query.scan_journal import FileVersion

__all__ = ["DuplicateGroup", "DuplicateReport", "find_duplicates"]


@dataclass(frozen=True)
class DuplicateGroup:
    """Files with the same content: ``<root>/<path>`` each, sorted."""

    sha256: str  # "" when a member is a secret file: its hash is never shown
    size: int
    paths: list[str]

    @property
    def wasted(self) -> int:
        """Bytes taken by all copies but one."""
        return self.size * (len(self.paths) - 1)


@dataclass
class DuplicateReport:
    """Every group of two or more identical files, the largest waste first."""

    files: int = 0
    hashed: int = 0  # files read because their journal hash could not be used
    groups: list[DuplicateGroup] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "files_hashed": self.hashed,
            "duplicate_groups": len(self.groups),
            "duplicate_files": sum(len(g.paths) - 1 for g in self.groups),
            "wasted_bytes": sum(g.wasted for g in self.groups),
            "groups": [
                {"sha256": g.sha256, "size": g.size, "paths": g.paths, "wasted_bytes": g.wasted}
                for g in self.groups
            ],
            "problems": self.problems,
        }


def find_duplicates(
    roots: Sequence[RootInput],
    versions: dict[str, dict[str, FileVersion]],
    *,
    sha256_of: Callable[[FileVersion], str],
) -> DuplicateReport:
    """Group the protected files of ``roots`` by content; ``versions`` are the journal's
    last versions per root, ``sha256_of`` a version's content hash (secret files keep
    theirs encrypted)."""
    report = DuplicateReport()
    by_content: dict[tuple[str, int], list[str]] = {}
    secret: set[tuple[str, int]] = set()
    for root in roots:
        known = versions.get(root.name, {})
        for relpath, st in root.walk():
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                continue
            report.files += 1
            digest = _digest(root, relpath, st, known.get(relpath), sha256_of, report)
            if digest is None:
                continue
            content = (digest, st.st_size)
            by_content.setdefault(content, []).append(f"{root.name}/{relpath}")
            if root.is_secret(relpath):
                secret.add(content)
    groups = [
        DuplicateGroup("" if c in secret else c[0], c[1], sorted(paths))
        for c, paths in by_content.items()
        if len(paths) > 1
    ]
    report.groups = sorted(groups, key=lambda g: (-g.wasted, g.paths))
    return report


def _digest(
    root: RootInput,
    relpath: str,
    st: os.stat_result,
    version: FileVersion | None,
    sha256_of: Callable[[FileVersion], str],
    report: DuplicateReport,
) -> str | None:
    """The journal's hash when the file is as captured, else the file's own."""
    if version is not None and version.link_target is None and same_stat(version, st):
        known = sha256_of(version)
        if known:  # "": a secret file's hash needs the key; read the file instead
            return known
    report.hashed += 1
    try:
        return sha256_file(root.path / relpath)
    except OSError as exc:
        report.problems.append(f"{root.name}/{relpath}: {exc.strerror or exc}")
        return None
