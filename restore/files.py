"""Restoring files: plan what each file needs, then write it atomically with mode and mtime.

Each file of the state at the cut is compared with what is on disk now:

- ``identical``: the file on disk already has that content and mode (or link target): skipped.
- ``create``: nothing is there.
- ``overwrite``: it differs, and what is there is the journal's newest version of it, so
  every byte being replaced is protected and a rollback can bring it back.
- ``delete`` (in place only): the journal knows the file, it did not exist at the cut, and
  what is there is the journal's newest version.
- ``conflict``: what is there differs from the journal's newest version too: a change
  Hindsight has not captured (yet), which overwriting would lose. The strategy decides.

Files the journal never knew are never touched. Contents stream from the blob store into a
temporary file beside the target, every chunk checked against its id and the whole against the
size and SHA-256 the journal recorded, and are given their mode and mtime; once all are
written one ``sync`` makes them durable, then each is renamed into place and its directory
fsynced.
"""

from __future__ import annotations

import contextlib
import fnmatch
import gc
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from itertools import zip_longest
from pathlib import Path
from typing import TypeVar

from compaction.state_at import StateAt
from compaction.tables import FILESYSTEM, file_images
from journal.blobs import BlobStore
from journal.errors import CorruptionError, HindsightError
from journal.events import FileImage
from journal.fsutil import file_sha256, fsync_dir
from journal.repository import Reopener, Repository
from restore.merge import MergeImpossible, MergeResult, merge_json
from restore.workers import process_count, run_in_processes

__all__ = ["Action", "FileItem", "FilePlan", "Strategy", "apply_files", "plan_files"]

# Threads that stage files: reading, checking and writing overlap, but every thread also
# needs the GIL and contends for it; past about two per CPU they cost more than they give.
WORKERS = min(8, 2 * (os.cpu_count() or 1))
T = TypeVar("T")
BATCH = 64  # files a thread stages per task: one task per file costs more than small files
EARLY_SYNC_BYTES = 128 * 1024 * 1024  # staged bytes between background syncs
PROCESS_BATCH = 256  # files a worker process stages per task (each task is sent and answered)
WRITE_CHUNKS = 64  # chunks written with one writev: 16 MiB at most (256 KiB, the largest chunk)


class Action(Enum):
    """What a restore does with one item."""

    IDENTICAL = "identical"
    CREATE = "create"
    OVERWRITE = "overwrite"
    DELETE = "delete"
    CONFLICT = "conflict"


class Strategy(Enum):
    """What to do with a conflict."""

    SKIP = "skip"
    OVERWRITE = "overwrite"
    RENAME = "rename"
    MERGE = "merge"  # JSON files: three-way merge (base: the journal's newest version); else rename
    PROMPT = "prompt"  # ask per conflict (``apply_files``'s ``ask``); skip when nobody can answer


@dataclass
class FileItem:
    """One file of the plan; ``image`` is the version to restore (None: delete it)."""

    root: str
    path: str
    target: Path
    action: Action
    image: FileImage | None
    size: int
    newest: FileImage | None = None  # the journal's newest version: a merge's base


@dataclass
class FilePlan:
    """Every file a restore would touch or skip."""

    items: list[FileItem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Items per action."""
        counts = {a.value: 0 for a in Action}
        for item in self.items:
            counts[item.action.value] += 1
        return counts

    def bytes(self, action: Action) -> int:
        return sum(i.size for i in self.items if i.action is action)


@dataclass
class FileResults:
    """What applying a plan did."""

    restored: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    renamed: list[str] = field(default_factory=list)
    merged: dict[str, list[str]] = field(default_factory=dict)  # file -> fields left as live
    failed: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------- planning
def plan_files(
    at: StateAt,
    head: StateAt,
    targets: dict[str, Path],
    *,
    in_place: bool,
    paths: Iterable[str] = (),
    only: set[str] | None = None,
    sha256_of: Callable[[FileImage], str] = lambda image: image.sha256,
) -> FilePlan:
    """Compare the files of ``at`` (for the roots in ``targets``) with the disk.

    ``targets`` maps a root's name to the directory its files go to; ``head`` is the state at
    the journal's end (the newest version of every file). ``paths`` are globs that limit the
    files (a glob with ``/`` matches the root-relative path, one without it the file name,
    as in the config); ``only`` limits them to exact ``<root>/<path>`` keys. ``sha256_of``
    gives a version's content hash (secret files keep theirs encrypted).
    """
    globs = list(paths)

    def wanted(root: str, path: str) -> bool:
        if only is not None and f"{root}/{path}" not in only:
            return False
        return not globs or _matches(path, globs)

    newest = {root: dict(_files(head, root)) for root in targets}
    plan = FilePlan()
    for root, base in targets.items():
        restored = newest[root] if at is head else dict(_files(at, root))  # cut = the end
        empty = not os.path.lexists(base)  # a new directory: every file is created
        for path, image in restored.items():
            if wanted(root, path):
                known = newest[root].get(path)
                target = base / path
                action = Action.CREATE if empty else _action(target, image, known, sha256_of)
                item = FileItem(root, path, target, action, image, image.size, known)
                plan.items.append(item)
        if not in_place:
            continue
        for path, known in newest[root].items():
            if path in restored or not wanted(root, path):
                continue
            live = base / path
            if not os.path.lexists(live):
                continue
            same = _same(live, known, sha256_of)
            action = Action.DELETE if same else Action.CONFLICT
            plan.items.append(FileItem(root, path, live, action, None, known.size))
    return plan


def _matches(path: str, globs: list[str]) -> bool:
    """A glob with ``/`` matches the root-relative path, one without it the file name."""
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatchcase(path if "/" in g else name, g) for g in globs)


def _files(state: StateAt, root: str) -> Iterator[tuple[str, FileImage]]:
    for table in state.tables:
        if table.ref.source == FILESYSTEM and table.ref.namespace == root:
            for batch in state.rows(table):
                yield from file_images(batch)


def _action(
    live: Path, image: FileImage, newest: FileImage | None, sha256_of: Callable[[FileImage], str]
) -> Action:
    if not os.path.lexists(live):
        return Action.CREATE
    if _same(live, image, sha256_of):
        return Action.IDENTICAL
    if newest is not None and _same(live, newest, sha256_of):
        return Action.OVERWRITE
    return Action.CONFLICT


def _same(live: Path, image: FileImage, sha256_of: Callable[[FileImage], str]) -> bool:
    """Whether the file on disk is ``image``: link target, or size, mode and SHA-256."""
    try:
        st = live.lstat()
    except FileNotFoundError:
        return False
    if image.link_target is not None:
        return stat.S_ISLNK(st.st_mode) and os.readlink(live) == image.link_target
    if not stat.S_ISREG(st.st_mode) or st.st_size != image.size:
        return False
    if stat.S_IMODE(st.st_mode) != image.mode:
        return False
    return file_sha256(live).hex() == sha256_of(image)


# ---------------------------------------------------------------------- applying
def apply_files(
    plan: FilePlan,
    blobs: BlobStore,
    strategy: Strategy,
    *,
    suffix: str,
    progress: Callable[[int], None] | None = None,
    ask: Callable[[FileItem], Strategy] | None = None,
    reopen: Reopener | None = None,
    processes: int | None = None,
) -> FileResults:
    """Carry out ``plan``; one file failing never stops the others (it is reported).

    In two phases, so a crash never leaves a file half written: every new version is
    written to a temporary file beside its target, one ``sync`` makes them all durable, then
    each is renamed into place (deletes happen here too) and each directory is fsynced once.
    A sync per file would cost more than the restore itself.

    Plain writes go to worker processes (``restore.workers``) when ``reopen`` says how they
    can open the repository and there is enough to write (``processes``: how many, default
    ``process_count``); the rest, and all of a smaller restore, to ``WORKERS`` threads.
    """
    results = FileResults()
    choices = _choices(plan, strategy, ask)
    writer = _Writer(blobs, suffix, results)
    numbered = _interleaved(plan.items)
    chosen = {index: choices.get(index, strategy) for index, _ in numbered}
    staged: list[_Staged] = []
    flusher = _Flusher()
    with _collector_paused():
        if reopen is not None:
            there = _Elsewhere(reopen, processes, staged, results, progress, flusher)
            numbered = there.stage(numbered, chosen)
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="restore") as pool:

            def stage(batch: list[tuple[int, FileItem]]) -> list[_Staged]:
                steps = (writer.stage(item, chosen[index]) for index, item in batch)
                return [step for step in steps if step is not None]

            batches = _batches(numbered, BATCH)
            for batch, steps in zip(batches, pool.map(stage, batches), strict=True):
                staged.extend(steps)
                flusher.staged(sum(item.size for _, item in batch))
                if progress:
                    progress(len(batch))
    flusher.finish()
    with ThreadPoolExecutor(WORKERS, thread_name_prefix="restore-rename") as pool:
        for _ in pool.map(lambda steps: [s.commit(results) for s in steps], _batches(staged, 256)):
            pass  # renames wait on the disk, not the GIL: threads overlap them
    for directory in sorted({os.path.dirname(step.target) for step in staged}):
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(Path(directory))
    for listed in (results.restored, results.deleted, results.skipped, results.renamed):
        listed.sort()
    return results


class _Flusher:
    """Makes staged files durable while later ones are still being written: a ``sync`` in
    the background each time ``EARLY_SYNC_BYTES`` more are staged, so the disk writes
    overlap the staging and the final ``sync`` (``finish``) finds little left to write."""

    def __init__(self) -> None:
        self.unsynced = 0
        self.thread: threading.Thread | None = None

    def staged(self, nbytes: int) -> None:
        """``nbytes`` more were staged."""
        self.unsynced += nbytes
        if self.unsynced >= EARLY_SYNC_BYTES and not (self.thread and self.thread.is_alive()):
            self.unsynced = 0
            self.thread = threading.Thread(target=os.sync, name="restore-sync", daemon=True)
            self.thread.start()

    def finish(self) -> None:
        """Everything staged is durable."""
        if self.thread is not None:
            self.thread.join()
        os.sync()


@dataclass
class _Elsewhere:
    """Stages the plain writes of a restore in worker processes (``restore.workers``) when
    there is enough to write, adding them to ``staged`` and failures to ``results``."""

    reopen: Reopener
    processes: int | None  # None: as many as ``process_count`` says
    staged: list[_Staged]
    results: FileResults
    progress: Callable[[int], None] | None
    flusher: _Flusher
    items: dict[int, FileItem] = field(default_factory=dict)  # those sent to workers, by number

    def stage(
        self, numbered: list[tuple[int, FileItem]], chosen: dict[int, Strategy]
    ) -> list[tuple[int, FileItem]]:
        """Stage what workers can; the items left for this process."""
        plain = sorted(n for n in numbered if _plain_write(n[1], chosen[n[0]]))  # by directory
        count = self.processes
        if count is None:
            count = process_count(sum(item.size for _, item in plain))
        if not plain or count < 1:
            return numbered
        self.items = dict(plain)
        jobs: list[_Job] = [(i, str(item.target), item.image) for i, item in plain if item.image]
        batches = _batches(jobs, PROCESS_BATCH)
        undone = run_in_processes(batches, self.reopen, _stage_jobs, self._done, count)
        left = [n for n in numbered if n[0] not in self.items]
        return left + [(job[0], self.items[job[0]]) for batch in undone for job in batch]

    def _done(self, jobs: list[_Job], outcomes: list[_Outcome]) -> None:
        for (index, target, _), (tmp, error) in zip(jobs, outcomes, strict=True):
            item = self.items[index]
            key = f"{item.root}/{item.path}"
            if tmp is None:
                self.results.failed[key] = error or "not written"
            else:
                self.staged.append(_Staged(key, target, tmp, _restored(key)))
        self.flusher.staged(sum(image.size for _, _, image in jobs))
        if self.progress:
            self.progress(len(jobs))


def _plain_write(item: FileItem, strategy: Strategy) -> bool:
    """Whether staging ``item`` is writing its version to its own target, as a worker
    process can (merges, renames, deletes and symlinks are done here)."""
    if item.image is None or item.image.link_target is not None:
        return False
    if item.action is Action.CONFLICT:
        return strategy is Strategy.OVERWRITE
    return item.action in (Action.CREATE, Action.OVERWRITE)


def _batches(items: list[T], size: int) -> list[list[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _restored(key: str) -> Callable[[FileResults], None]:
    return lambda r: r.restored.append(key)


_Job = tuple[int, str, FileImage]  # an item's number, where to write it, what to write
_Outcome = tuple[str | None, str | None]  # (temporary file, None), or (None, why not)
_worker_writer: _Writer | None = None  # in a worker process: its writer (it knows the dirs made)


def _stage_jobs(repository: Repository, jobs: list[_Job]) -> list[_Outcome]:
    """In a worker process: each version in a temporary file beside its target."""
    global _worker_writer
    if _worker_writer is None or _worker_writer.blobs is not repository.blobs:
        _worker_writer = _Writer(repository.blobs, "", FileResults())
    outcomes: list[_Outcome] = []
    with _collector_paused():
        for _, target, image in jobs:
            try:
                outcomes.append((_worker_writer.write(target, image), None))
            except (HindsightError, OSError) as exc:
                outcomes.append((None, _why(exc)))
    return outcomes


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while files are written: a restore allocates no cycles,
    and each collection would walk the plan's many items again for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _interleaved(items: list[FileItem]) -> list[tuple[int, FileItem]]:
    """The items numbered, one directory after another in turn: threads that create files in
    one directory at once wait on its lock (and spin on it, burning a CPU)."""
    by_dir: dict[str, list[tuple[int, FileItem]]] = {}
    for numbered in enumerate(items):
        key = f"{numbered[1].root}/{numbered[1].path}"
        by_dir.setdefault(key.rpartition("/")[0], []).append(numbered)
    rounds = zip_longest(*by_dir.values())
    return [numbered for round_ in rounds for numbered in round_ if numbered is not None]


def _choices(
    plan: FilePlan, strategy: Strategy, ask: Callable[[FileItem], Strategy] | None
) -> dict[int, Strategy]:
    """With ``prompt``: each item's strategy, asked per conflict before any file is written
    (skip when nobody can be asked); other items never reach the strategy."""
    if strategy is not Strategy.PROMPT:
        return {}
    return {
        i: ask(item) if ask is not None and item.action is Action.CONFLICT else Strategy.SKIP
        for i, item in enumerate(plan.items)
    }


@dataclass
class _Staged:
    """A change ready to be made: rename ``tmp`` over ``target`` (None: delete ``target``)."""

    key: str
    target: str
    tmp: str | None
    record: Callable[[FileResults], None]

    def commit(self, results: FileResults) -> None:
        try:
            if self.tmp is None:
                os.unlink(self.target)
            else:
                os.replace(self.tmp, self.target)
        except OSError as exc:
            results.failed[self.key] = _os(exc)
            if self.tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.tmp)
            return
        self.record(results)


class _Writer:
    """Stages the items of one restore (from any number of threads): each new version in a
    temporary file beside its target, with its mode and mtime."""

    def __init__(self, blobs: BlobStore, suffix: str, results: FileResults) -> None:
        self.blobs, self.suffix, self.results = blobs, suffix, results
        self.tag = f"hindsight-{os.getpid()}"
        self.made: set[str] = set()  # directories known to exist: one mkdir each

    def stage(self, item: FileItem, strategy: Strategy) -> _Staged | None:
        """What ``item`` needs (None: nothing, or it failed and is in ``results.failed``)."""
        key = f"{item.root}/{item.path}"
        try:
            return self._stage(item, strategy, key)
        except (HindsightError, OSError) as exc:
            self.results.failed[key] = _why(exc)
            return None

    def _stage(self, item: FileItem, strategy: Strategy, key: str) -> _Staged | None:
        action, target = item.action, str(item.target)
        if action is Action.IDENTICAL or (action is Action.CONFLICT and strategy is Strategy.SKIP):
            self.results.skipped.append(key)
            return None
        if item.image is None:  # a delete (or a conflicting one the strategy lets through)
            if action is Action.CONFLICT and strategy is Strategy.RENAME:
                self.results.skipped.append(key)  # nothing to write beside it
                return None
            return _Staged(key, target, None, lambda r: r.deleted.append(key))
        if action is Action.CONFLICT and strategy is Strategy.MERGE and _is_json(item.path):
            try:
                merged = _merge(item, self.blobs)
            except MergeImpossible:  # not JSON after all: keep both, as rename does
                return self._stage(item, Strategy.RENAME, key)
            tmp = self._tmp(target)
            with _removed_on_failure(tmp):
                Path(tmp).write_bytes(merged.data)
                os.chmod(tmp, item.image.mode)
            conflicts = list(merged.conflicts)
            return _Staged(key, target, tmp, lambda r: r.merged.__setitem__(key, conflicts))
        if action is Action.CONFLICT and strategy in (Strategy.RENAME, Strategy.MERGE):
            beside = f"{target}.{self.suffix}"
            tmp = self.write(beside, item.image)
            name = os.path.basename(beside)
            return _Staged(key, beside, tmp, lambda r: r.renamed.append(f"{key} -> {name}"))
        tmp = self.write(target, item.image)
        return _Staged(key, target, tmp, _restored(key))

    def _tmp(self, target: str) -> str:
        head, name = os.path.split(target)
        return os.path.join(head, f".{name}.{self.tag}.tmp")

    def write(self, target: str, image: FileImage) -> str:
        """One version in a temporary file beside ``target`` (or a symlink), with its mode
        and mtime; its path. The caller syncs and renames it."""
        parent = os.path.dirname(target)
        if parent not in self.made:
            os.makedirs(parent, exist_ok=True)
            self.made.add(parent)
        tmp = self._tmp(target)
        with _removed_on_failure(tmp):
            if image.link_target is not None:
                os.symlink(image.link_target, tmp)
                os.utime(tmp, ns=(image.mtime_ns, image.mtime_ns), follow_symlinks=False)
            else:
                _write_content(tmp, image, self.blobs)
        return tmp


def _is_json(path: str) -> bool:
    return path.lower().endswith(".json")


def _merge(item: FileItem, blobs: BlobStore) -> MergeResult:
    """Undo what changed between the cut and the journal's newest version, keeping the
    live file's uncaptured changes (``restore.merge``); MergeImpossible if not JSON."""
    assert item.image is not None
    base = blobs.read(item.newest.blob) if item.newest and item.newest.blob else None
    return merge_json(base, item.target.read_bytes(), blobs.read(item.image.blob))


@contextlib.contextmanager
def _removed_on_failure(tmp: str) -> Iterator[None]:
    """A temporary file that a failure while writing it must not leave behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_content(tmp: str, image: FileImage, blobs: BlobStore) -> None:
    """The content, mode and mtime, through one descriptor (a restore of many small files
    pays per system call).

    Every chunk is checked against its id and the blob's list against the blob's id, so the
    bytes written are those whose size and SHA-256 the list records; comparing those with
    the journal's record of the version checks the whole file without hashing it again.
    """
    ref, chunks = blobs.opened(image.blob)
    if ref.size != image.size or (image.sha256 and ref.sha256 != image.sha256):
        raise CorruptionError(
            f"blob {image.blob} holds {ref.size:,} bytes with SHA-256 {ref.sha256}, but the "
            f"journal recorded {image.size:,} bytes with SHA-256 {image.sha256 or ref.sha256}"
        )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        written, pending = 0, []
        for chunk in chunks:
            written += len(chunk)
            pending.append(chunk)
            if len(pending) == WRITE_CHUNKS:
                _write_all(fd, pending)
                pending = []
        _write_all(fd, pending)
        os.fchmod(fd, image.mode)
        os.utime(fd, ns=(image.mtime_ns, image.mtime_ns))
    finally:
        os.close(fd)
    if written != ref.size:
        raise CorruptionError(f"blob {image.blob} lists {written:,} bytes, not {ref.size:,}")


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """``chunks`` with one system call (each costs the threads a hand-over of the GIL)."""
    written = os.writev(fd, chunks) if chunks else 0
    rest = memoryview(b"".join(chunks))[written:] if written < sum(map(len, chunks)) else None
    while rest:  # a short write: a signal, or the disk filling up (then os.write raises)
        rest = rest[os.write(fd, rest) :]


def _why(exc: HindsightError | OSError) -> str:
    """A failure's reason as a result lists it."""
    return str(exc) if isinstance(exc, HindsightError) else _os(exc)


def _os(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
