"""Which files of a protected root are protected, and which of them are secrets.

Globs are matched against POSIX paths relative to the root. ``*`` and ``?`` stay inside one
path segment, ``**`` spans segments (``src/**`` is everything under ``src``, ``**/x`` is
``x`` at any depth). A pattern without a ``/`` matches a file's name at any depth, as in
``.gitignore``: ``*.pem`` protects every PEM file in the tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

__all__ = ["FileRoot", "GlobSet"]


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    anchored = "/" in pattern.rstrip("/")
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            c = pattern[i]
            out.append("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c))
            i += 1
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(prefix + "".join(out))


class GlobSet:
    """A set of globs, compiled once; ``matches`` is the hot path of every scan."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(p.lstrip("/") for p in patterns)
        joined = "|".join(f"(?:{_regex(p).pattern})" for p in self.patterns)
        self._re = re.compile(joined) if joined else None

    def matches(self, relpath: str) -> bool:
        """Whether ``relpath`` (POSIX, relative to the root) matches any pattern."""
        return self._re is not None and self._re.fullmatch(relpath) is not None

    def matches_dir(self, reldir: str) -> bool:
        """Whether every path under directory ``reldir`` matches (so it can be pruned)."""
        return self._re is not None and self._re.fullmatch(reldir + "/") is not None


@dataclass(frozen=True)
class FileRoot:
    """One protected directory: its name in the journal, its path, and its filters."""

    name: str
    path: Path
    include: GlobSet
    exclude: GlobSet
    secrets: GlobSet = field(default_factory=lambda: GlobSet(()))

    @classmethod
    def of(
        cls,
        name: str,
        path: Path,
        include: Iterable[str],
        exclude: Iterable[str] = (),
        secrets: Iterable[str] = (),
    ) -> FileRoot:
        """Build a root from plain glob lists."""
        return cls(name, path, GlobSet(include), GlobSet(exclude), GlobSet(secrets))

    def wants(self, relpath: str) -> bool:
        """Whether the file at ``relpath`` is protected."""
        return self.include.matches(relpath) and not self.exclude.matches(relpath)

    def wants_dir(self, reldir: str) -> bool:
        """Whether a scan should descend into directory ``reldir``."""
        return not self.exclude.matches_dir(reldir)

    def is_secret(self, relpath: str) -> bool:
        """Whether the file's content must always be stored encrypted."""
        return self.secrets.matches(relpath)

    def relpath(self, path: Path) -> str | None:
        """``path`` relative to the root as POSIX, or None when it lies outside."""
        try:
            return path.relative_to(self.path).as_posix()
        except ValueError:
            return None
