"""Filesystem capture: turn the live state of protected files into journal events.

One idea serves both the watcher and the reconciling scan: *examine a path* by comparing
what is on disk with what the journal last recorded (``KnownFiles``), and emit the event
that makes the journal true again. The watcher only says which paths to examine; the scan
examines every path, so a dropped watcher event, or a change made while the daemon was down,
is found by the next scan. A file whose size, mtime, inode and mode match the known state is
not read. Content is read only when it is stable (same size and mtime before and after the
read), streamed into the blob store, flushed, and only then named by an appended event.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from capture.git import GitRepo
from capture.paths import FileRoot
from capture.state import META_INODE, META_OLD_PATH, FileState, KnownFiles
from journal.errors import HindsightError
from journal.events import ChangeEvent, FileImage, Op, Source, now_us
from journal.meta import META_CTIME
from journal.protocols import BlobRef, BlobSink, EventSink

__all__ = ["DEFAULT_SCAN_BATCH", "FileCapture", "Problem", "ScanSummary"]

log = logging.getLogger("hindsight.capture.filesystem")

DEFAULT_SCAN_BATCH = 500
MAX_PROBLEMS = 1000
SCAN_MARKER = "scan"
STABLE_READ_ATTEMPTS = 4
Progress = Callable[[int, int], None]


class Problem(NamedTuple):
    """A file that could not be captured this time, and why (never its content)."""

    root: str
    relpath: str
    reason: str


@dataclass
class ScanSummary:
    """What a reconciling scan found and did."""

    files: int = 0
    new: int = 0
    changed: int = 0
    deleted: int = 0
    moved: int = 0
    unchanged: int = 0
    bytes_read: int = 0
    events: int = 0
    problems: list[Problem] = field(default_factory=list)

    def add(self, op: Op) -> None:
        """Count one emitted event."""
        self.events += 1
        if op is Op.CREATE:
            self.new += 1
        elif op is Op.DELETE:
            self.deleted += 1
        elif op is Op.MOVE:
            self.moved += 1
        else:
            self.changed += 1


class _Unstable(Exception):
    """The file kept changing while it was read."""


class FileCapture:
    """Examines paths of protected roots and appends the events that record their changes.

    Thread-safe: the watcher worker and a scan may run at once; each batch is examined and
    appended under one lock, so the known state and the journal never disagree.
    """

    def __init__(
        self,
        roots: Sequence[FileRoot],
        sink: EventSink,
        blobs: BlobSink,
        known: KnownFiles,
        *,
        scan_batch: int = DEFAULT_SCAN_BATCH,
        clock: Callable[[], int] = now_us,
    ) -> None:
        self.roots = {r.name: r for r in roots}
        self.sink, self.blobs, self.known = sink, blobs, known
        self.scan_batch, self.clock = scan_batch, clock
        self.problems: deque[Problem] = deque(maxlen=MAX_PROBLEMS)  # the newest, for status
        self.problem_count = 0
        self._lock = threading.Lock()
        self._git: dict[str, GitRepo | None] = {}

    # ------------------------------------------------------------- examining
    def examine(self, root_name: str, relpaths: Iterable[str]) -> list[ChangeEvent]:
        """Examine ``relpaths`` (files or directories) of a root; append and return events."""
        root = self.roots[root_name]
        with self._lock:
            events: list[ChangeEvent] = []
            for relpath in relpaths:
                events += self._examine_path(root, relpath.strip("/"))
            return self._commit(events)

    def examine_move(self, root_name: str, old: str, new: str) -> list[ChangeEvent]:
        """A rename the watcher saw: record a move when the file is the one we knew."""
        root = self.roots[root_name]
        with self._lock:
            events = self._move(root, old, new)
            return self._commit(events)

    def _examine_path(self, root: FileRoot, relpath: str) -> list[ChangeEvent]:
        path = root.path / relpath
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return self._vanished(root, relpath)
        except OSError as exc:
            return self._problem(root, relpath, exc.strerror or str(exc))
        if stat.S_ISDIR(st.st_mode):
            return self._examine_dir(root, relpath, path)
        if not root.wants(relpath):
            return []
        event = self._examine_file(root, relpath, st)
        return [event] if event else []

    def _examine_dir(self, root: FileRoot, reldir: str, path: Path) -> list[ChangeEvent]:
        if reldir and not root.wants_dir(reldir):
            return []
        events: list[ChangeEvent] = []
        seen = set()
        for rel, st in _walk(root, reldir, path, self._note):
            seen.add(rel)
            event = self._examine_file(root, rel, st)
            if event:
                events.append(event)
        gone = [p for p in self.known.paths(root.name, reldir) if p not in seen]
        return events + [self._delete_event(root, p) for p in gone if root.wants(p)]

    def _vanished(self, root: FileRoot, relpath: str) -> list[ChangeEvent]:
        known = [relpath] if self.known.get(root.name, relpath) else []
        known += list(self.known.paths(root.name, relpath))
        return [self._delete_event(root, p) for p in known]

    def _examine_file(self, root: FileRoot, relpath: str, st: os.stat_result) -> ChangeEvent | None:
        known = self.known.get(root.name, relpath)
        if known is not None and known.same_stat(st):
            return None
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            return None  # sockets, fifos, devices: not content
        try:
            image, st = self._image(root, relpath, st)
        except _Unstable:
            self._note(root, relpath, "kept changing while read; retried on its next change")
            return None
        except OSError as exc:
            self._note(root, relpath, f"unreadable: {exc.strerror or exc}")
            return None
        except HindsightError as exc:  # e.g. a secret file and no key to encrypt it with
            self._note(root, relpath, str(exc))
            return None
        if known == FileState.of(image, st.st_ino):
            return None  # e.g. the watcher saw an open-close without a write
        op = Op.CREATE if known is None else Op.MODIFY
        return self._file_event(root, relpath, op, image, st)

    def _image(
        self, root: FileRoot, relpath: str, st: os.stat_result
    ) -> tuple[FileImage, os.stat_result]:
        path = root.path / relpath
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(path)
            return _image(BlobRef("", len(os.fsencode(target)), ""), st, target), st
        ref, st = self._read_stable(path, root.is_secret(relpath))
        return _image(ref, st, None), st

    def _read_stable(self, path: Path, secret: bool) -> tuple[BlobRef, os.stat_result]:
        for attempt in range(STABLE_READ_ATTEMPTS):
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                before = os.fstat(fd)
                ref = self.blobs.put_stream(f, secret=secret)
                after = os.fstat(fd)
            if _stable(before, after) and ref.size == after.st_size:
                return ref, after
            time.sleep(0.02 * (attempt + 1))
        raise _Unstable

    def _move(self, root: FileRoot, old: str, new: str) -> list[ChangeEvent]:
        """``old`` was renamed to ``new``: a move, re-read only if it also changed."""
        known = self.known.get(root.name, old)
        try:
            st = os.lstat(root.path / new)
        except OSError:
            return self._examine_path(root, old) + self._examine_path(root, new)
        if known is None or not root.wants(new) or known.ino != st.st_ino:
            return self._examine_path(root, old) + self._examine_path(root, new)
        if known.same_stat(st):
            image = _image(BlobRef(known.blob, known.size, known.sha256), st, known.link_target)
        else:  # renamed and changed in one burst: still the same file, moved
            try:
                image, st = self._image(root, new, st)
            except (OSError, _Unstable, HindsightError):
                return self._examine_path(root, old) + self._examine_path(root, new)
        return [self._file_event(root, new, Op.MOVE, image, st, old)]

    # -------------------------------------------------------------- scanning
    def scan(self, root_name: str | None = None, progress: Progress | None = None) -> ScanSummary:
        """Reconcile every protected file of one root (or all) with the journal."""
        summary = ScanSummary()
        before = self.problem_count
        for root in [self.roots[root_name]] if root_name else list(self.roots.values()):
            self._scan_root(root, summary, progress)
        found = self.problem_count - before
        summary.problems = list(self.problems)[-found:] if found else []
        return summary

    def _scan_root(self, root: FileRoot, summary: ScanSummary, progress: Progress | None) -> None:
        """Known files first, as the walk finds them; then renames, new files, deletions.

        New paths wait for the end of the walk: only then is it known which known paths
        vanished, so a new path holding a vanished file's inode is recorded as its rename.
        """
        seen: dict[str, os.stat_result] = {}
        new: list[tuple[str, os.stat_result]] = []
        for batch in _batches(_walk(root, "", root.path, self._note), self.scan_batch):
            known: list[tuple[str, os.stat_result]] = []
            for item in batch:
                (known if self.known.get(root.name, item[0]) else new).append(item)
            self._scan_batch(root, known, summary)
            seen.update(batch)
            if progress:
                progress(len(seen), 0)
        gone = self._gone(root, seen)
        new = self._renames(root, new, gone, summary)
        for batch in _batches(iter(new), self.scan_batch):
            self._scan_batch(root, batch, summary)
        with self._lock:
            self._commit([self._delete_event(root, p) for p in gone if root.wants(p)], summary)
            self.sink.append([self._scan_marker(root, len(seen))])
        summary.files += len(seen)

    def _gone(self, root: FileRoot, seen: dict[str, os.stat_result]) -> dict[str, FileState]:
        """Known paths the walk did not find and that do not exist now either."""
        return {
            p: s
            for p in self.known.paths(root.name)
            if p not in seen
            and (s := self.known.get(root.name, p)) is not None
            and not os.path.lexists(root.path / p)  # the watcher may have seen a newer file
        }

    def _renames(
        self,
        root: FileRoot,
        new: list[tuple[str, os.stat_result]],
        gone: dict[str, FileState],
        summary: ScanSummary,
    ) -> list[tuple[str, os.stat_result]]:
        """Record new paths that hold a vanished file's inode as moves; return the rest."""
        by_inode = {s.ino: p for p, s in gone.items() if s.ino}
        rest = []
        for relpath, st in new:
            old = by_inode.pop(st.st_ino, None)
            if old is None or gone[old].size != st.st_size:
                rest.append((relpath, st))
                continue
            del gone[old]
            with self._lock:
                self._commit(self._move(root, old, relpath), summary)
        return rest

    def _scan_marker(self, root: FileRoot, files: int) -> ChangeEvent:
        """A system event recording the scan, with the git HEAD of the root's work tree."""
        meta = {"files": str(files), "path": str(root.path)}
        try:
            git = self._git.setdefault(root.name, GitRepo.find(root.path))
            if git is not None:
                state = git.state()
                meta.update(git_top=str(state.top), git_head=state.head or "")
                meta.update(git_branch=state.branch or "")
        except HindsightError as exc:
            self._note(root, ".", f"git state unavailable: {exc}")
        return ChangeEvent(
            Source.SYSTEM, root.name, SCAN_MARKER, Op.MARKER, self.clock(), meta=meta
        )

    def _scan_batch(
        self, root: FileRoot, batch: list[tuple[str, os.stat_result]], summary: ScanSummary
    ) -> None:
        """Examine one batch of walked files; one flush and one append for all of them."""
        with self._lock:
            events = []
            for relpath, st in batch:
                known = self.known.get(root.name, relpath)
                event = (
                    None if known and known.same_stat(st) else self._examine_file(root, relpath, st)
                )
                if event is None:
                    summary.unchanged += known is not None
                    continue
                if isinstance(event.after, FileImage) and event.after.blob:
                    summary.bytes_read += event.after.size
                events.append(event)
            self._commit(events, summary)

    # --------------------------------------------------------------- events
    def _file_event(
        self,
        root: FileRoot,
        relpath: str,
        op: Op,
        image: FileImage,
        st: os.stat_result,
        old: str | None = None,
    ) -> ChangeEvent:
        # ctime is recorded, never compared: a rewrite that puts mtime back changes only
        # ctime, and ``hindsight recover scan`` (not capture) reports it
        meta = {META_INODE: str(st.st_ino), META_CTIME: str(st.st_ctime_ns)}
        if old is not None:
            meta[META_OLD_PATH] = old
        return ChangeEvent(
            Source.FILESYSTEM,
            root.name,
            relpath,
            op,
            st.st_ctime_ns // 1000,  # the inode's last change: a write, chmod or rename
            after=image,
            meta=meta,
        )

    def _delete_event(self, root: FileRoot, relpath: str) -> ChangeEvent:
        return ChangeEvent(Source.FILESYSTEM, root.name, relpath, Op.DELETE, self.clock())

    def _commit(
        self, events: list[ChangeEvent], summary: ScanSummary | None = None
    ) -> list[ChangeEvent]:
        """Make contents durable, then append the events that name them (lock held)."""
        if not events:
            return events
        self.blobs.flush()
        got = self.sink.append(events)
        committed = [e._replace(seq=got.first + i) for i, e in enumerate(events)]
        self.known.apply_all(committed)
        if summary is not None:
            for e in committed:
                summary.add(e.op)
        return committed

    def _problem(self, root: FileRoot, relpath: str, reason: str) -> list[ChangeEvent]:
        self._note(root, relpath, reason)
        return []

    def _note(self, root: FileRoot, relpath: str, reason: str) -> None:
        problem = Problem(root.name, relpath, reason)
        self.problems.append(problem)
        self.problem_count += 1
        log.warning("cannot capture %s/%s: %s", root.name, relpath, reason)


def _walk(
    root: FileRoot, reldir: str, path: Path, note: Callable[[FileRoot, str, str], None]
) -> Iterator[tuple[str, os.stat_result]]:
    """Protected files under ``path`` with their lstat; excluded directories are pruned."""
    stack = [(reldir, path)]
    while stack:
        rel, current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as exc:
            note(root, rel or ".", f"cannot list directory: {exc.strerror or exc}")
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            child = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished between listing and stat
            if stat.S_ISDIR(st.st_mode):
                if root.wants_dir(child):
                    stack.append((child, Path(entry.path)))
            elif root.wants(child):
                yield child, st


def _batches(
    items: Iterator[tuple[str, os.stat_result]], size: int
) -> Iterator[list[tuple[str, os.stat_result]]]:
    batch: list[tuple[str, os.stat_result]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _stable(before: os.stat_result, after: os.stat_result) -> bool:
    return (before.st_size, before.st_mtime_ns, before.st_ino) == (
        after.st_size,
        after.st_mtime_ns,
        after.st_ino,
    )


def _image(ref: BlobRef, st: os.stat_result, link_target: str | None) -> FileImage:
    return FileImage(
        blob=ref.id,
        size=ref.size,
        sha256=ref.sha256,
        mode=stat.S_IMODE(st.st_mode),
        mtime_ns=st.st_mtime_ns,
        link_target=link_target,
    )
