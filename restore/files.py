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
temporary file beside the target, are checked against their SHA-256 and given their mode and
mtime; once all are written one ``sync`` makes them durable, then each is renamed into place
and its directory fsynced.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from itertools import zip_longest
from pathlib import Path

from compaction.state_at import StateAt
from compaction.tables import FILESYSTEM, file_image
from journal.blobs import BlobStore
from journal.errors import CorruptionError, HindsightError
from journal.events import FileImage
from journal.fsutil import file_sha256, fsync_dir
from restore.merge import MergeImpossible, MergeResult, merge_json

__all__ = ["Action", "FileItem", "FilePlan", "Strategy", "apply_files", "plan_files"]

# Threads that stage files: reading, checking and writing overlap, but every thread also
# needs the GIL and contends for it; past about two per CPU they cost more than they give.
WORKERS = min(8, 2 * (os.cpu_count() or 1))


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
        for path, image in restored.items():
            if wanted(root, path):
                known = newest[root].get(path)
                target = base / path
                action = _action(target, image, known, sha256_of)
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
                for row in batch.to_pylist():
                    yield row["key"], file_image(row)


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
) -> FileResults:
    """Carry out ``plan``; one file failing never stops the others (it is reported).

    In two phases, so a crash never leaves a file half written: ``WORKERS`` threads write
    every new version to a temporary file beside its target (reading, decrypting and
    checking overlap), one ``sync`` makes them all durable, then each is renamed into place
    (deletes happen here too) and each directory is fsynced once. A sync per file would cost
    more than the restore itself.
    """
    results = FileResults()
    staged: list[_Staged] = []
    choices = _choices(plan, strategy, ask)
    made: set[Path] = set()  # directories known to exist: one mkdir each, not one per file

    def stage(numbered: tuple[int, FileItem]) -> None:
        index, item = numbered
        key = f"{item.root}/{item.path}"
        chosen = choices.get(index, strategy)
        try:
            step = _stage(item, blobs, chosen, suffix, results, key, made)
        except (HindsightError, OSError) as exc:
            results.failed[key] = str(exc) if isinstance(exc, HindsightError) else _os(exc)
        else:
            if step is not None:
                staged.append(step)

    with ThreadPoolExecutor(WORKERS, thread_name_prefix="restore") as pool:
        for _ in pool.map(stage, _interleaved(plan.items)):
            if progress:
                progress(1)
    os.sync()
    dirs = {step.target.parent for step in staged}
    for step in staged:
        step.commit(results)
    for directory in sorted(dirs):
        with contextlib.suppress(FileNotFoundError):
            fsync_dir(directory)
    for listed in (results.restored, results.deleted, results.skipped, results.renamed):
        listed.sort()
    return results


def _interleaved(items: list[FileItem]) -> list[tuple[int, FileItem]]:
    """The items numbered, one directory after another in turn: threads that create files in
    one directory at once wait on its lock (and spin on it, burning a CPU)."""
    by_dir: dict[Path, list[tuple[int, FileItem]]] = {}
    for numbered in enumerate(items):
        by_dir.setdefault(numbered[1].target.parent, []).append(numbered)
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
    target: Path
    tmp: Path | None
    record: Callable[[FileResults], None]

    def commit(self, results: FileResults) -> None:
        try:
            if self.tmp is None:
                self.target.unlink()
            else:
                os.replace(self.tmp, self.target)
        except OSError as exc:
            results.failed[self.key] = _os(exc)
            if self.tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.tmp.unlink()
            return
        self.record(results)


def _stage(
    item: FileItem,
    blobs: BlobStore,
    strategy: Strategy,
    suffix: str,
    results: FileResults,
    key: str,
    made: set[Path] | None = None,
) -> _Staged | None:
    action = item.action
    if action is Action.IDENTICAL or (action is Action.CONFLICT and strategy is Strategy.SKIP):
        results.skipped.append(key)
        return None
    if item.image is None:  # a delete (or a conflicting one the strategy lets through)
        if action is Action.CONFLICT and strategy is Strategy.RENAME:
            results.skipped.append(key)  # nothing to write beside it
            return None
        return _Staged(key, item.target, None, lambda r: r.deleted.append(key))
    if action is Action.CONFLICT and strategy is Strategy.MERGE and _is_json(item.path):
        try:
            merged = _merge(item, blobs)
        except MergeImpossible:  # not JSON after all: keep both, as rename does
            return _stage(item, blobs, Strategy.RENAME, suffix, results, key, made)
        tmp = stage_bytes(item.target, merged.data, item.image.mode)
        conflicts = list(merged.conflicts)
        return _Staged(key, item.target, tmp, lambda r: r.merged.__setitem__(key, conflicts))
    if action is Action.CONFLICT and strategy in (Strategy.RENAME, Strategy.MERGE):
        beside = item.target.with_name(f"{item.target.name}.{suffix}")
        tmp = stage_file(beside, item.image, blobs, made=made)
        return _Staged(key, beside, tmp, lambda r: r.renamed.append(f"{key} -> {beside.name}"))
    tmp = stage_file(item.target, item.image, blobs, made=made)
    return _Staged(key, item.target, tmp, lambda r: r.restored.append(key))


def _is_json(path: str) -> bool:
    return path.lower().endswith(".json")


def _merge(item: FileItem, blobs: BlobStore) -> MergeResult:
    """Undo what changed between the cut and the journal's newest version, keeping the
    live file's uncaptured changes (``restore.merge``); MergeImpossible if not JSON."""
    assert item.image is not None
    base = blobs.read(item.newest.blob) if item.newest and item.newest.blob else None
    return merge_json(base, item.target.read_bytes(), blobs.read(item.image.blob))


def _tmp_for(target: Path) -> Path:
    return target.with_name(f".{target.name}.hindsight-{os.getpid()}.tmp")


@contextlib.contextmanager
def _removed_on_failure(tmp: Path) -> Iterator[None]:
    """A temporary file that a failure while writing it must not leave behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def stage_bytes(target: Path, data: bytes, mode: int) -> Path:
    """``data`` in a temporary file beside ``target`` (a merge's result); its path."""
    tmp = _tmp_for(target)
    with _removed_on_failure(tmp):
        tmp.write_bytes(data)
        os.chmod(tmp, mode)
    return tmp


def stage_file(
    target: Path, image: FileImage, blobs: BlobStore, *, made: set[Path] | None = None
) -> Path:
    """One version in a temporary file beside ``target``, checked against its SHA-256, with
    its mode and mtime (or a symlink); its path. The caller syncs and renames it. ``made``
    holds directories known to exist (shared by the threads of one restore; added to)."""
    if made is None or target.parent not in made:
        target.parent.mkdir(parents=True, exist_ok=True)
        if made is not None:
            made.add(target.parent)
    tmp = _tmp_for(target)
    with _removed_on_failure(tmp):
        if image.link_target is not None:
            os.symlink(image.link_target, tmp)
            os.utime(tmp, ns=(image.mtime_ns, image.mtime_ns), follow_symlinks=False)
        else:
            _write_content(tmp, image, blobs)
    return tmp


def _write_content(tmp: Path, image: FileImage, blobs: BlobStore) -> None:
    """The content, mode and mtime, through one descriptor (a restore of many small files
    pays per system call)."""
    digest = hashlib.sha256()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        for chunk in blobs.open(image.blob):
            digest.update(chunk)
            _write_all(fd, chunk)
        os.fchmod(fd, image.mode)
        os.utime(fd, ns=(image.mtime_ns, image.mtime_ns))
    finally:
        os.close(fd)
    expected = image.sha256 or blobs.stat(image.blob).sha256
    if digest.hexdigest() != expected:
        raise CorruptionError(f"blob {image.blob} does not hash to the recorded SHA-256")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _os(exc: OSError) -> str:
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
