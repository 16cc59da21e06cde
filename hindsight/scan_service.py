"""The brief's ``scan_for_lost_files`` and ``find_duplicates`` for one repository.

``query.scan`` compares sources with the journal but knows no source; this module hands it
each one as plain data and callables: the protected files of every root (walked by the
config's include and exclude globs, as capture walks them), what each MongoDB deployment
holds now, and what git has of each root's work tree. It also gives the scan the blob
store's view of a version (a secret file's real SHA-256, a version's content).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pymongo.errors import PyMongoError

from capture.git import GitRepo
from capture.mongo_target import MongoTarget
from capture.paths import FileRoot
from compaction.backups import BackupCatalog
from compaction.retention import parse_duration
from compaction.snapshots import snapshots_of
from compaction.state_at import state_at
from hindsight.config import Config, MongoSource, redact
from hindsight.wiring import file_roots, mongo_client
from journal.errors import ConfigError, HindsightError
from journal.events import now_us
from journal.fsutil import atomic_write, make_dirs
from journal.repository import Repository
from query.duplicates import DuplicateReport, find_duplicates
from query.scan import SOURCES, GitInput, Scanner, ScanResult, ScanSettings
from query.scan_files import Progress, RootInput
from query.scan_journal import FileVersion, file_versions
from query.scan_mongo import LiveDeployment

__all__ = ["SOURCES", "ScanService", "last_scan", "record_scan", "walk"]

log = logging.getLogger("hindsight.scan")


def walk(root: FileRoot) -> Iterator[tuple[str, os.stat_result]]:
    """The protected files of ``root`` with their lstat, excluded directories pruned (the
    files capture's scan examines), in no particular order."""
    stack = [("", str(root.path))]
    wants, wants_dir = root.wants, root.wants_dir
    is_dir = stat.S_ISDIR
    while stack:
        rel, current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # unreadable: capture reports it; its files are not called lost
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if is_dir(st.st_mode):
                if wants_dir(child):
                    stack.append((child, entry.path))
            elif wants(child):
                yield child, st


class ScanService:
    """Scans and duplicate searches over one opened repository under one config."""

    def __init__(self, config: Config, repo: Repository) -> None:
        self.config, self.repo = config, repo
        self.snapshots = snapshots_of(repo)
        self.catalog = BackupCatalog(repo.root, repo.store, repo.record_cipher)
        self.roots = file_roots(config)

    def close(self) -> None:
        self.repo.close()

    def __enter__(self) -> ScanService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ scan
    def scan(
        self,
        sources: Sequence[str] = (),
        *,
        deep: bool = False,
        progress: Progress | None = None,
        now: int | None = None,
    ) -> ScanResult:
        """Scan the named sources (none named: every one configured, and cloud)."""
        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise ConfigError(
                f"--source {unknown[0]}: not a source; use one of {', '.join(SOURCES)}"
            )
        chosen = set(sources or SOURCES)
        scanner = Scanner(
            self.snapshots, self.repo.log, self.catalog.readable()[0], self._settings(deep),
            sha256_of=self._sha256, read_blob=self._read_blob,
            now_us=now_us() if now is None else now, progress=progress,
        )  # fmt: skip
        result = scanner.scan(
            self._roots() if "filesystem" in chosen else None,
            self._deployments() if "mongodb" in chosen and self.config.sources.mongodb else None,
            self._git() if "git" in chosen else None,
            cloud="cloud" in chosen,
            several_roots=len(self.roots) > 1,
        )
        record_scan(self.repo.root, result, sorted(chosen))
        return result

    def _settings(self, deep: bool) -> ScanSettings:
        s = self.config.recovery.scan
        return ScanSettings(
            expected=s.expected_files,
            window=s.window,
            window_us=parse_duration(s.window) * 1_000_000,
            bulk_delete_threshold=s.bulk_delete_threshold,
            count_drop_percent=s.count_drop_percent,
            deep=deep,
        )

    def _roots(self) -> list[RootInput]:
        return [
            RootInput(r.name, r.path, functools.partial(walk, r), r.wants, r.is_secret)
            for r in self.roots
        ]

    def _read_blob(self, blob: str) -> bytes:
        # the blob store is opened on first use only: most scans never read a version
        return self.repo.blobs.read(blob)

    def _sha256(self, version: FileVersion) -> str:
        """A version's content hash; "" when it cannot be had (a secret without the key)."""
        if version.sha256 or not version.blob:
            return version.sha256
        try:
            return self.repo.blobs.stat(version.blob).sha256
        except HindsightError:
            return ""

    # --------------------------------------------------------------------- sources
    def _deployments(self) -> list[LiveDeployment]:
        return [_live(source) for source in self.config.sources.mongodb]

    def _git(self) -> list[GitInput]:
        inputs = []
        for root in self.roots:
            try:
                repo = GitRepo.find(root.path)
                if repo is None:
                    continue
                prefix = repo.relpath(root.path)
            except HindsightError:
                continue  # git unusable here: the scan goes on without it
            prefix = "" if prefix in ("", ".") else prefix.rstrip("/") + "/"
            missing, latest = _git_calls(repo, prefix)
            inputs.append(GitInput(root.name, str(repo.top), prefix, missing, latest, root.wants))
        return inputs

    # ------------------------------------------------------------------ duplicates
    def duplicates(self) -> DuplicateReport:
        """Groups of identical content among the protected files."""
        end = state_at(self.snapshots, self.repo.log, self.repo.log.next_seq - 1)
        versions = {r.name: file_versions(end, r.name) for r in self.roots}
        return find_duplicates(self._roots(), versions, sha256_of=self._sha256)


def _git_calls(repo: GitRepo, prefix: str) -> tuple[Any, Any]:
    """``missing`` and ``latest`` of one root, with paths relative to the root; a git
    failure while scanning means "nothing from git", never a failed scan."""

    def missing() -> list[str]:
        try:
            paths = repo.missing(prefix.rstrip("/"))
        except HindsightError:
            return []
        return [p[len(prefix) :] for p in paths if p.startswith(prefix)]

    def latest(relpath: str) -> tuple[str, int] | None:
        try:
            version = repo.latest(prefix + relpath)
        except HindsightError:
            return None
        return (version.commit, version.time_us) if version else None

    return missing, latest


def _live(source: MongoSource) -> LiveDeployment:
    """The protected collections of one deployment now, with their document counts."""
    target = MongoTarget(source.name, source.databases, source.collections)
    try:
        client = mongo_client(source)
    except ConfigError as exc:
        return LiveDeployment(source.name, False, protected=target.wants, error=str(exc))
    counts: dict[str, int] = {}
    try:
        databases = list(source.databases) or client.list_database_names()
        for db in databases:
            if not target.wants_database(db):
                continue
            for coll in client[db].list_collection_names():
                if target.wants(f"{db}.{coll}"):
                    counts[f"{db}.{coll}"] = client[db][coll].estimated_document_count()
    except PyMongoError as exc:
        error = f"{source.redacted_uri}: {redact(str(exc))[:300]}"
        return LiveDeployment(source.name, False, protected=target.wants, error=error)
    finally:
        client.close()
    return LiveDeployment(source.name, True, counts, target.wants)


LAST_SCAN = "scans/last.json"


def record_scan(root: Path, result: ScanResult, sources: list[str]) -> None:
    """Keep the newest scan's summary (``<repository>/scans/last.json``), which the status
    shows and alerts on; a scan that cannot write it still answers."""
    summary = result.to_dict()
    doc = {
        "scan_id": summary["scan_id"],
        "timestamp": summary["timestamp"],
        "sources": sources,
        "findings": len(result.findings),
    }
    try:
        make_dirs((root / LAST_SCAN).parent)
        atomic_write(root / LAST_SCAN, json.dumps(doc, indent=2).encode())
    except OSError as exc:
        log.warning("the scan's summary could not be kept: %s", exc)


def last_scan(root: Path) -> dict[str, Any] | None:
    """The newest scan's summary (None before the first, or unreadable)."""
    try:
        doc = json.loads((root / LAST_SCAN).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
