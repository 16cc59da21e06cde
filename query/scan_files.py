"""Scanning one protected root: the live files against the journal's last version of each.

Stat only, as capture does: a file whose size, mtime, inode and mode match its version is
not read. Two exceptions read it, to compare its SHA-256 with the version's: a file whose
ctime moved although nothing else did (a rewrite that put mtime back: capture cannot see it,
by design), and, in a deep scan, every file (bit rot leaves even ctime alone). A file whose
stat differs was changed after the journal's last capture; that alone is no finding, unless
it is now empty where its version was not, or is a JSON or config file that no longer
parses while its version did.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import stat
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from compaction.backup_maker import CONFIG_FILES
from query.findings import Finding, file_type, matches
from query.scan_journal import FileVersion, Loss, Recent, RestorePoints

__all__ = [
    "DEFAULT_PARSE_LIMIT",
    "RootInput",
    "RootReport",
    "RootScan",
    "parser_for",
    "same_stat",
    "sha256_file",
]

DEFAULT_PARSE_LIMIT = 256 * 1024 * 1024  # larger files are not parsed
HASH_CHUNK = 1024 * 1024

Walk = Callable[[], Iterable[tuple[str, os.stat_result]]]
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RootInput:
    """One protected root as the scan needs it: its files (protected ones, with their
    lstat, excluded directories pruned) and whether a path is protected."""

    name: str
    path: Path
    walk: Walk
    wants: Callable[[str], bool]
    is_secret: Callable[[str], bool] = lambda _path: False


@dataclass
class RootReport:
    """What scanning one root found."""

    scanned: int = 0
    found: int = 0
    changed: int = 0  # changed since the last capture, nothing wrong seen
    new: int = 0  # not in the journal yet
    findings: list[Finding] = field(default_factory=list)
    live: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def same_stat(version: FileVersion, st: os.stat_result) -> bool:
    """Capture's test (``FileState.same_stat``) plus ctime when one was recorded: the file
    is as captured without reading it. An inode of 0 (never recorded) is not compared."""
    return (
        version.size == st.st_size
        and version.mtime_ns == st.st_mtime_ns
        and (version.ino == st.st_ino or not version.ino)
        and version.mode == stat.S_IMODE(st.st_mode)
        and (version.ctime_ns is None or version.ctime_ns == st.st_ctime_ns)
    )


def parser_for(path: str) -> Callable[[bytes], object] | None:
    """How to check that ``path``'s content still parses: JSON files, and the config files
    (``config.py``, TOML, INI) whose format has a parser here; None for the others."""
    name = path.rsplit("/", 1)[-1].lower()
    if name.endswith(".json"):
        return json.loads
    if not matches(path, CONFIG_FILES):
        return None
    if name.endswith(".toml"):
        return lambda data: tomllib.loads(data.decode("utf-8"))
    if name.endswith((".ini", ".cfg")):
        return lambda data: configparser.ConfigParser(interpolation=None).read_string(
            data.decode("utf-8")
        )
    if name.endswith(".py"):
        return lambda data: compile(data, path, "exec", dont_inherit=True)
    return None


def _parses(parse: Callable[[bytes], object], data: bytes) -> bool:
    try:
        parse(data)
    except (ValueError, SyntaxError, configparser.Error):  # JSON, TOML, UTF-8 errors are ValueError
        return False
    return True


class RootScan:
    """Compares one root's files with ``versions`` (the journal's last version of each)."""

    def __init__(
        self,
        root: RootInput,
        versions: dict[str, FileVersion],
        recent: Recent,
        points: RestorePoints,
        *,
        sha256_of: Callable[[FileVersion], str],
        read_blob: Callable[[str], bytes],
        deep: bool = False,
        expected: tuple[str, ...] = (),
        progress: Progress | None = None,
    ) -> None:
        self.root, self.versions, self.recent, self.points = root, versions, recent, points
        self.sha256_of, self.read_blob = sha256_of, read_blob
        self.deep, self.expected, self.progress = deep, expected, progress
        self.report = RootReport()

    def run(self) -> RootReport:
        """Walk, then read what must be read, then account for what was not found."""
        suspects, changed = self._walk()
        self._hash(suspects)
        for relpath, version, st in changed:
            self._changed(relpath, version, st)
        self._missing()
        self._captured(self.recent.deleted, "deleted")
        self._captured(self.recent.truncated, "truncated")
        return self.report

    # ---------------------------------------------------------------------- the walk
    def _walk(
        self,
    ) -> tuple[list[tuple[str, FileVersion, bool]], list[tuple[str, FileVersion, os.stat_result]]]:
        """Stat every protected file: the ones to hash (ctime moved, or ``deep``) and the
        ones changed since their capture. The hot loop: nothing here reads a file."""
        versions, live, deep = self.versions, self.report.live, self.deep
        suspects: list[tuple[str, FileVersion, bool]] = []
        changed: list[tuple[str, FileVersion, os.stat_result]] = []
        imode, new = stat.S_IMODE, 0
        for relpath, st in self.root.walk():
            live.add(relpath)
            version = versions.get(relpath)
            if version is None:
                new += 1
                continue
            if (  # ``same_stat`` without ctime, inlined: once per protected file
                version.size == st.st_size
                and version.mtime_ns == st.st_mtime_ns
                and (version.ino == st.st_ino or not version.ino)
                and version.mode == imode(st.st_mode)
            ):
                moved = version.ctime_ns is not None and version.ctime_ns != st.st_ctime_ns
                if moved or deep:
                    suspects.append((relpath, version, moved))
            else:
                changed.append((relpath, version, st))
        self.report.found, self.report.new = len(live), new
        return suspects, changed

    # -------------------------------------------------------------- silent changes
    def _hash(self, suspects: list[tuple[str, FileVersion, bool]]) -> None:
        """Read the suspects and compare their content with their version's."""
        for done, (relpath, version, moved) in enumerate(suspects, 1):
            if self._differs(relpath, version):
                kind = "silent_change" if moved else "bit_rot"
                reason = (
                    "content changed without a captured change: size and mtime are as "
                    "captured, only ctime moved (a rewrite that put mtime back)"
                    if moved
                    else "content differs from the captured version although size, mtime "
                    "and ctime are unchanged (bit rot or a write below the filesystem)"
                )
                self._add(relpath, kind, reason, version, None, None)
            if self.progress:
                self.progress(done, len(suspects))

    def _differs(self, relpath: str, version: FileVersion) -> bool:
        path = self.root.path / relpath
        try:
            if version.link_target is not None:
                return os.readlink(path) != version.link_target
            before = os.lstat(path)
            digest = sha256_file(path)
            after = os.lstat(path)
        except OSError as exc:
            self.report.problems.append(f"{self.root.name}/{relpath}: {exc.strerror or exc}")
            return False
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            return False  # being written right now: a change capture will see
        expected = self.sha256_of(version)
        if not expected:  # a secret file's hash needs the key: cannot tell
            self.report.problems.append(f"{self.root.name}/{relpath}: captured hash unavailable")
            return False
        return digest != expected

    # ------------------------------------------------------------- changed files
    def _changed(self, relpath: str, version: FileVersion, st: os.stat_result) -> None:
        """A file changed since its capture: damaged, or simply not captured yet."""
        if stat.S_ISREG(st.st_mode) and st.st_size == 0 and version.size > 0:
            reason = f"truncated to zero bytes (its last captured version had {version.size})"
            self._add(relpath, "truncated", reason, version, None, None)
            return
        parse = parser_for(relpath)
        if parse and stat.S_ISREG(st.st_mode) and self._broken(relpath, version, parse):
            reason = "no longer parses, while its last captured version did"
            self._add(relpath, "unparseable", reason, version, None, None)
            return
        self.report.changed += 1

    def _broken(self, relpath: str, version: FileVersion, parse: Callable[[bytes], object]) -> bool:
        """The live content does not parse and the version's does."""
        if max(version.size, (self.root.path / relpath).stat().st_size) > DEFAULT_PARSE_LIMIT:
            return False
        try:
            live = (self.root.path / relpath).read_bytes()
        except OSError:
            return False
        if _parses(parse, live):
            return False
        try:
            captured = self.read_blob(version.blob)
        except Exception as exc:  # e.g. a secret file and no key: cannot tell, so no finding
            self.report.problems.append(f"{self.root.name}/{relpath}: {exc}")
            return False
        return _parses(parse, captured)

    # ------------------------------------------------------------------ lost files
    def _missing(self) -> None:
        """Versions the walk did not find, that are protected and really gone."""
        live, base = self.report.live, self.root.path
        for relpath, version in self.versions.items():
            if relpath in live or not self.root.wants(relpath):
                continue
            if os.path.lexists(base / relpath):
                continue  # unreadable directory, or not a regular file: not lost
            reason = "missing from disk; its deletion was not captured"
            self._add(relpath, "missing", reason, version, None, None)

    def _captured(self, losses: dict[tuple[str, str], Loss], kind: str) -> None:
        """Deletions or truncations the journal captured in the window and still holds."""
        for (root, relpath), loss in losses.items():
            if root != self.root.name:
                continue
            current = self.versions.get(relpath)
            if kind == "deleted" and (current is not None or relpath in self.report.live):
                continue  # it came back
            if kind == "truncated" and not self._still_empty(relpath, current, loss):
                continue
            before = loss.before
            if before is None or before.size == 0:
                continue  # resolved by ``resolve`` from the state before the window
            when = "deleted" if kind == "deleted" else "truncated to zero bytes"
            reason = f"{when}; captured at seq {loss.seq}"
            self._add_version(relpath, kind, reason, before.seq, before.size, loss)

    def _still_empty(self, relpath: str, current: FileVersion | None, loss: Loss) -> bool:
        """The truncation is the file's last version and the file is still empty."""
        if current is None or current.seq != loss.seq or relpath not in self.report.live:
            return False
        if any(f.path == relpath for f in self.report.findings):
            return False
        try:
            return (self.root.path / relpath).stat().st_size == 0
        except OSError:
            return False

    # ------------------------------------------------------------------- findings
    def _add(
        self,
        relpath: str,
        kind: str,
        reason: str,
        version: FileVersion,
        until: int | None,
        until_us: int | None,
    ) -> None:
        """A finding whose good version is ``version``, good until event ``until``."""
        last_scan = self.recent.scans.get(self.root.name, 0)
        seen = max(self.points.capture_us(version.seq) or version.ts, last_scan)
        finding = Finding(
            "filesystem", kind, self.root.name, relpath, reason,
            file_type(relpath, self.expected), seen,
            self.points.holding(version.seq, until, until_us),
        )  # fmt: skip
        self.report.findings.append(finding)

    def _add_version(
        self, relpath: str, kind: str, reason: str, seq: int, size: int, loss: Loss
    ) -> None:
        seen = max(self.points.capture_us(seq) or 0, loss.last_scan_us)
        finding = Finding(
            "filesystem", kind, self.root.name, relpath, reason,
            file_type(relpath, self.expected), seen or None,
            self.points.holding(seq, loss.seq, loss.capture_ts),
        )  # fmt: skip
        self.report.findings.append(finding)


def sha256_file(path: Path) -> str:
    """The file's SHA-256, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
