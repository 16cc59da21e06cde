"""The brief's ``scan_for_lost_files``: live sources against the journal's last known state.

The journal's state at its end (``compaction.state_at``) says what should exist; the recent
window of events says what was deleted or damaged and captured; backups and the journal say
where a good version is. The sources themselves reach this module as plain data and
callables (``RootInput``, ``LiveDeployment``, ``GitInput``), handed over by
``hindsight/scan_service.py``, so nothing here knows how files are walked, databases queried
or git run.

The result has exactly the brief's Scan Result keys (``scan_id``, ``timestamp``, ``sources``,
``lost_files``, ``recommendations``) plus ``corrupted_files`` and ``findings`` (every finding
with its ``kind`` and ``reason``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from compaction.backups import Backup, iso_time
from compaction.snapshots import Snapshots
from compaction.state_at import StateAt, state_at
from journal.errors import NotFound
from journal.log import SegmentLog
from query.findings import Finding, RestorePoint, file_type, matches, recommendation
from query.scan_files import Progress, RootInput, RootReport, RootScan
from query.scan_journal import Before, FileVersion, Loss, Recent, RestorePoints, file_versions
from query.scan_mongo import LiveDeployment, MongoReport, MongoScan

__all__ = [
    "CLOUD_NOT_BUILT",
    "GitInput",
    "ScanResult",
    "ScanSettings",
    "Scanner",
    "scan_id_at",
]

CLOUD_NOT_BUILT = (
    "cloud copies are not built yet: Hindsight keeps its repository on local storage only, "
    "so there is no cloud copy to scan"
)
SOURCES = ("filesystem", "mongodb", "git", "cloud")


def scan_id_at(us: int) -> str:
    """``scan_YYYYMMDD_HHMMSS`` (UTC) for a scan started at ``us``."""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("scan_%Y%m%d_%H%M%S")


@dataclass(frozen=True)
class ScanSettings:
    """What counts as a finding; see ``[recovery.scan]`` in the config."""

    expected: tuple[str, ...] = ()  # globs of files that must exist
    window: str = "24h"  # as written, for messages
    window_us: int = 24 * 3600 * 1_000_000
    bulk_delete_threshold: int = 100
    count_drop_percent: int = 20
    deep: bool = False


@dataclass(frozen=True)
class GitInput:
    """What git offers for one root: files of its HEAD commit gone from disk, and the newest
    commit that has a file (root-relative paths; ``prefix`` is the root relative to ``top``)."""

    root: str
    top: str
    prefix: str
    missing: Callable[[], list[str]]
    latest: Callable[[str], tuple[str, int] | None]  # (commit, commit time µs)
    wants: Callable[[str], bool] = lambda _path: True  # whether the root protects a path


@dataclass
class ScanResult:
    """Everything a scan found."""

    scan_id: str
    timestamp_us: int
    findings: list[Finding] = field(default_factory=list)
    files: dict[str, Any] | None = None
    mongodb: dict[str, Any] | None = None
    git: dict[str, Any] | None = None
    cloud: dict[str, Any] | None = None
    several_roots: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        """The brief's Scan Result, with ``corrupted_files`` and ``findings`` added."""
        findings = [self._finding(f) for f in self.findings]
        return {
            "scan_id": self.scan_id,
            "timestamp": iso_time(self.timestamp_us),
            "sources": self._sources(),
            "lost_files": [_brief(f) for f in findings if f["lost"]],
            "corrupted_files": [_brief(f) for f in findings if f["corrupted"]],
            "recommendations": [_sentence(f) for f in findings if f["recommendation"]],
            "findings": findings,
            "problems": self.problems,
        }

    def _sources(self) -> dict[str, Any]:
        files = self.files or {}
        mongo = self.mongodb or {}
        sources = {
            "mongodb": {
                "connected": bool(mongo.get("connected")),
                "collections_found": mongo.get("collections_found", 0),
                "collections_missing": mongo.get("collections_missing", 0),
                "total_documents": mongo.get("total_documents", 0),
                "scanned": self.mongodb is not None,
            },
            "filesystem": {
                "files_scanned": files.get("files_scanned", 0),
                "files_found": files.get("files_found", 0),
                "files_missing": files.get("files_missing", 0),
                "files_corrupted": files.get("files_corrupted", 0),
                "files_changed_since_capture": files.get("changed", 0),
                "files_not_captured_yet": files.get("new", 0),
                "deep": files.get("deep", False),
                "scanned": self.files is not None,
            },
        }
        if self.git is not None:
            sources["git"] = self.git
        if self.cloud is not None:
            sources["cloud"] = self.cloud
        return sources

    def _finding(self, f: Finding) -> dict[str, Any]:
        return {
            "source": f.source,
            "kind": f.kind,
            "where": f.where,
            "path": f.path,
            "type": f.type,
            "reason": f.reason,
            "last_seen": iso_time(f.last_seen_us) if f.last_seen_us else None,
            "recoverable_from": [p.label for p in f.points],
            "recommendation": recommendation(f, self.several_roots),
            "lost": f.lost,
            "corrupted": f.corrupted,
        }


def _brief(f: dict[str, Any]) -> dict[str, Any]:
    """A lost or corrupted file as the brief lists it, the root and why added."""
    keys = ("path", "type", "last_seen", "recoverable_from", "where", "kind", "reason")
    out = {k: f[k] for k in keys}
    out["root"] = out.pop("where")
    out["recommendation"] = f["recommendation"]
    return out


def _sentence(f: dict[str, Any]) -> str:
    """``Restore <what> from <point>: <command>``."""
    what = f["path"] if f["source"] != "mongodb" else f"{f['where']} {f['path']}"
    return f"Restore {what} from {f['recoverable_from'][0]}: {f['recommendation']}"


class Scanner:
    """Compares sources with the journal of one repository; ``scan`` is the one-shot call."""

    def __init__(
        self,
        snapshots: Snapshots,
        log: SegmentLog,
        backups: Sequence[Backup],
        settings: ScanSettings,
        *,
        sha256_of: Callable[[FileVersion], str],
        read_blob: Callable[[str], bytes],
        now_us: int,
        progress: Progress | None = None,
    ) -> None:
        self.snapshots, self.log, self.backups, self.settings = snapshots, log, backups, settings
        self.sha256_of, self.read_blob = sha256_of, read_blob
        self.now_us, self.progress = now_us, progress

    def scan(
        self,
        roots: Sequence[RootInput] | None = None,
        deployments: Sequence[LiveDeployment] | None = None,
        git: Sequence[GitInput] | None = None,
        *,
        cloud: bool = False,
        several_roots: bool = False,
    ) -> ScanResult:
        """Scan the sources given (None: that source is not scanned)."""
        result = ScanResult(scan_id_at(self.now_us), self.now_us, several_roots=several_roots)
        state, recent = self._journal()
        points = RestorePoints(self.snapshots, self.log, self.backups, recent)
        versions = {r: file_versions(state, r) for r in _root_names(roots, git)}
        if roots is not None:
            self._files(result, roots, versions, recent, points)
        if git is not None:
            self._git(result, git, versions, recent)
        if result.files is not None:  # lost files from git history are missing files too
            lost = sum(1 for f in result.findings if f.lost)
            result.files["files_missing"] = lost
            result.files["files_scanned"] = result.files["files_found"] + lost
        if deployments is not None:
            self._mongodb(result, deployments, state, recent, points)
        if cloud:
            result.cloud = {"available": False, "message": CLOUD_NOT_BUILT}
        return result

    # ----------------------------------------------------------------- the journal
    def _journal(self) -> tuple[StateAt, Recent]:
        """The state at the journal's end and the window's events, in one read where the
        window starts after the nearest snapshot."""
        end = self.log.next_seq - 1
        first = next(iter(self.log.read_time(self.now_us - self.settings.window_us)), None)
        recent = Recent(first.seq if first else end + 1)
        base = self.snapshots.catalog.latest(end)
        if base is not None and recent.start <= base.cut_seq:
            recent.feed(self.log, base.cut_seq)
        state = state_at(self.snapshots, self.log, end, side=[recent])
        self._resolve(recent)
        return state, recent

    def _resolve(self, recent: Recent) -> None:
        """Give losses whose replaced version predates the window that version, from the
        state just before the window (one more read, only when there are such losses)."""
        open_ = [
            (kind, where)
            for kind, losses in (("deleted", recent.deleted), ("truncated", recent.truncated))
            for where, loss in losses.items()
            if loss.before is None
        ]
        if not open_:
            return
        try:
            prior = state_at(self.snapshots, self.log, recent.start - 1)
        except NotFound:  # pruned, and no snapshot there: those versions are out of reach
            for kind, where in open_:
                (recent.deleted if kind == "deleted" else recent.truncated).pop(where)
            return
        versions = {root: file_versions(prior, root) for root in {w[0] for _, w in open_}}
        for kind, where in open_:
            losses = recent.deleted if kind == "deleted" else recent.truncated
            version = versions[where[0]].get(where[1])
            loss = losses[where]
            if version is None:
                del losses[where]
                continue
            before = Before(version.seq, 0, version.size)
            losses[where] = Loss(loss.seq, loss.capture_ts, before, loss.last_scan_us)

    # ----------------------------------------------------------------- the sources
    def _files(
        self,
        result: ScanResult,
        roots: Sequence[RootInput],
        versions: dict[str, dict[str, FileVersion]],
        recent: Recent,
        points: RestorePoints,
    ) -> None:
        reports: list[RootReport] = []
        for root in roots:
            scan = RootScan(
                root, versions[root.name], recent, points, sha256_of=self.sha256_of,
                read_blob=self.read_blob, deep=self.settings.deep,
                expected=self.settings.expected, progress=self.progress,
            )  # fmt: skip
            reports.append(scan.run())
        findings = [f for r in reports for f in r.findings]
        findings += self._expected(roots, reports, findings)
        found = sum(r.found for r in reports)
        result.files = {
            "files_found": found,
            "files_corrupted": sum(1 for f in findings if f.corrupted),
            "changed": sum(r.changed for r in reports),
            "new": sum(r.new for r in reports),
            "deep": self.settings.deep,
        }
        result.findings += findings
        result.problems += [p for r in reports for p in r.problems]

    def _expected(
        self, roots: Sequence[RootInput], reports: list[RootReport], findings: list[Finding]
    ) -> list[Finding]:
        """Expected files (globs) with no live match in any root and no finding already."""
        out = []
        for glob in self.settings.expected:
            pattern = _compiled(glob)
            if any(pattern.fullmatch(_subject(p, glob)) for r in reports for p in r.live):
                continue
            if any(f.lost and matches(f.path, [glob]) for f in findings):
                continue
            where = roots[0].name if len(roots) == 1 else ""
            reason = (
                "expected (recovery.scan.expected_files) but absent from every protected root; "
                "the journal has no version of it"
            )
            out.append(
                Finding("filesystem", "expected_missing", where, glob, reason, "knowledge_base")
            )
        return out

    def _git(
        self,
        result: ScanResult,
        inputs: Sequence[GitInput],
        versions: dict[str, dict[str, FileVersion]],
        recent: Recent,
    ) -> None:
        findings: list[Finding] = []
        for git in inputs:
            known = versions.get(git.root, {})
            for relpath in git.missing():
                if relpath in known or (git.root, relpath) in recent.deleted:
                    continue  # the journal has it: a filesystem finding
                if git.wants(relpath):
                    findings.append(self._git_finding(git, relpath))
        result.git = {"work_trees": len(inputs), "files_only_in_git": len(findings)}
        # an expected file that only git has replaces its "expected_missing" finding
        result.findings = [
            f
            for f in result.findings
            if f.kind != "expected_missing" or not any(matches(g.path, [f.path]) for g in findings)
        ]
        result.findings += findings

    def _git_finding(self, git: GitInput, relpath: str) -> Finding:
        latest = git.latest(relpath)
        points = [RestorePoint("git", f"git:{latest[0]}", latest[1])] if latest else []
        reason = "missing from disk and never captured by Hindsight; git history has it"
        kind = file_type(relpath, self.settings.expected)
        return Finding(
            "git", "git_only", git.root, relpath, reason, kind,
            latest[1] if latest else None, points, git.top, git.prefix + relpath,
        )  # fmt: skip

    def _mongodb(
        self,
        result: ScanResult,
        deployments: Sequence[LiveDeployment],
        state: StateAt,
        recent: Recent,
        points: RestorePoints,
    ) -> None:
        reports: list[MongoReport] = []
        for live in deployments:
            scan = MongoScan(
                live, state, recent, points,
                drop_percent=self.settings.count_drop_percent,
                bulk_threshold=self.settings.bulk_delete_threshold, window=self.settings.window,
            )  # fmt: skip
            reports.append(scan.run())
        result.mongodb = {
            "connected": bool(deployments) and all(d.connected for d in deployments),
            "collections_found": sum(r.found for r in reports),
            "collections_missing": sum(r.missing for r in reports),
            "total_documents": sum(r.documents for r in reports),
        }
        result.findings += [f for r in reports for f in r.findings]


def _root_names(roots: Sequence[RootInput] | None, git: Sequence[GitInput] | None) -> set[str]:
    return {r.name for r in roots or ()} | {g.root for g in git or ()}


def _compiled(glob: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(glob))


def _subject(path: str, glob: str) -> str:
    """What a glob is matched against: the path with ``/``, else the file name."""
    return path if "/" in glob else path.rsplit("/", 1)[-1]
