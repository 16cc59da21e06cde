"""Garbage collection of the blob store: what is garbage, what to do with each pack, and the
copying and deleting, in an order a crash cannot break.

An object is *live* when a live blob list is it or references it; every other object is
garbage, and so is every extra copy of a live object (the map names one copy per id). Per
pack: no live object, delete it; garbage at least ``threshold`` of its object bytes, *rewrite*
it (copy its live objects to the open pack, then delete it); else leave it.

1. If the open pack is to go, it is sealed first, so the copies go elsewhere.
2. The live objects of the packs to rewrite are copied (encrypted ones re-encrypted under the
   new pack's key) and fsynced; the map points at the copies.
3. The packs are deleted as ``journal.blobs.packs`` describes: named in ``collect.json``, key
   file destroyed, pack and index unlinked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from journal.blobs.objects import ID_BYTES, KIND_LIST, LIST_HEAD
from journal.blobs.packs import IndexEntry, delete_packs
from journal.blobs.packset import PackSet
from journal.errors import HindsightError

__all__ = [
    "DEFAULT_PROTECT_NEWER_THAN_S",
    "DEFAULT_REWRITE_THRESHOLD",
    "CollectGate",
    "CollectReport",
    "PackPlan",
    "collect_packs",
    "plan_pack",
]

DEFAULT_REWRITE_THRESHOLD = 0.10
DEFAULT_PROTECT_NEWER_THAN_S = 3600.0

DELETE, REWRITE, KEEP = "delete", "rewrite", "keep"


class CollectReport(NamedTuple):
    """What ``BlobStore.collect`` removed (or, in a dry run, would remove)."""

    objects_removed: int
    """Garbage objects in the deleted and rewritten packs."""
    bytes_freed: int
    """Bytes of the deleted pack and index files, less the bytes of the live copies."""
    packs_deleted: tuple[str, ...]
    """Packs that held no live object."""
    packs_rewritten: tuple[str, ...]
    """Packs whose live objects were copied to the open pack before they were deleted."""
    garbage_bytes: int
    """Garbage left behind, in packs below the rewrite threshold."""
    missing: tuple[str, ...]
    """Live blob ids (and chunk ids of live blobs) that the store does not hold."""


@dataclass
class PackPlan:
    """One pack's fate: its live and garbage objects, and what to do with it."""

    pack_id: str
    live: list[IndexEntry] = field(default_factory=list)
    garbage: list[IndexEntry] = field(default_factory=list)
    action: str = KEEP

    @property
    def garbage_bytes(self) -> int:
        """Frame bytes of its garbage objects."""
        return sum(e.length for e in self.garbage)

    @property
    def live_bytes(self) -> int:
        """Frame bytes of its live objects (what a rewrite copies)."""
        return sum(e.length for e in self.live)


def plan_pack(
    pack_id: str,
    entries: Iterable[IndexEntry],
    is_live: Callable[[IndexEntry], bool],
    threshold: float,
) -> PackPlan:
    """Split a pack's entries into live and garbage and choose its action."""
    plan = PackPlan(pack_id)
    for e in entries:
        (plan.live if is_live(e) else plan.garbage).append(e)
    total = plan.garbage_bytes + plan.live_bytes
    if not plan.live:
        plan.action = DELETE
    elif plan.garbage and plan.garbage_bytes >= threshold * total:
        plan.action = REWRITE
    return plan


def collect_packs(
    packs: PackSet,
    roots: set[bytes],
    recent: set[bytes],
    since: float | None,
    threshold: float,
    dry_run: bool,
) -> CollectReport:
    """Collect garbage: keep what the lists ``roots`` and ``recent`` need, and every list in a
    pack written to since ``since`` (a time.time(); None: no such protection)."""
    entries = {pid: packs.entries_of(pid) for pid in sorted(packs.paths)}
    if since is not None:
        recent = recent | _lists_in_recent_packs(packs, entries, since)
    kept, missing = _mark(packs, roots, recent)
    plans = [
        plan_pack(pid, pack, _live_test(packs, pid, kept), threshold)
        for pid, pack in entries.items()
    ]
    report = _report(packs, plans, missing)
    doomed = [p for p in plans if p.action != KEEP]
    if not dry_run and doomed:
        _sweep(packs, doomed)
    return report


def _lists_in_recent_packs(
    packs: PackSet, entries: dict[str, list[IndexEntry]], since: float
) -> set[bytes]:
    lists: set[bytes] = set()
    for pid, pack in entries.items():
        if packs.paths[pid].stat().st_mtime >= since:
            lists.update(e.id for e in pack if e.kind == KIND_LIST)
    return lists


def _mark(packs: PackSet, roots: set[bytes], recent: set[bytes]) -> tuple[set[bytes], list[str]]:
    """Every object the lists ``roots`` and ``recent`` need; the ids of ``roots`` and of
    their chunks that the store lacks."""
    kept: set[bytes] = set()
    missing: list[str] = []
    for raw in sorted(roots | recent):
        loc = packs.index.get(raw)
        if loc is None or loc.kind != KIND_LIST:
            if raw in roots:
                missing.append(raw.hex())
            continue
        kept.add(raw)
        for chunk in _chunks_of(packs, raw):
            if chunk in packs.index:
                kept.add(chunk)
            else:
                missing.append(chunk.hex())
    return kept, missing


def _chunks_of(packs: PackSet, raw: bytes) -> list[bytes]:
    try:
        ids = packs.read(raw)[LIST_HEAD.size :]
    except HindsightError as exc:
        msg = f"collect stopped, nothing deleted: live blob {raw.hex()} is unreadable: "
        raise type(exc)(msg + exc.reason, path=exc.path, offset=exc.offset) from exc
    return [ids[i : i + ID_BYTES] for i in range(0, len(ids), ID_BYTES)]


def _live_test(packs: PackSet, pack_id: str, kept: set[bytes]) -> Callable[[IndexEntry], bool]:
    def is_live(e: IndexEntry) -> bool:
        if e.id not in kept:
            return False
        loc = packs.index[e.id]  # the one copy reads use; any other copy is garbage
        return loc.pack_id == pack_id and loc.offset == e.offset

    return is_live


def _report(packs: PackSet, plans: list[PackPlan], missing: list[str]) -> CollectReport:
    gone = [p for p in plans if p.action != KEEP]
    return CollectReport(
        objects_removed=sum(len(p.garbage) for p in gone),
        bytes_freed=sum(packs.file_bytes(p.pack_id) - p.live_bytes for p in gone),
        packs_deleted=tuple(p.pack_id for p in gone if p.action == DELETE),
        packs_rewritten=tuple(p.pack_id for p in gone if p.action == REWRITE),
        garbage_bytes=sum(p.garbage_bytes for p in plans if p.action == KEEP),
        missing=tuple(missing),
    )


def _sweep(packs: PackSet, doomed: list[PackPlan]) -> None:
    """Steps 1 to 3 of the module docstring."""
    ids = {p.pack_id for p in doomed}
    with packs.lock:
        if packs.writer is not None and packs.writer.pack_id in ids:
            packs.seal_locked()
    try:
        for plan in doomed:
            packs.copy_in(plan.pack_id, plan.live)
    except HindsightError as exc:  # a live object that cannot be read is not deleted either
        msg = "collect stopped, nothing deleted: a live object cannot be copied: "
        raise type(exc)(msg + exc.reason, path=exc.path, offset=exc.offset) from exc
    packs.flush()
    with packs.lock:
        for plan in doomed:
            packs.forget(plan.pack_id, plan.live + plan.garbage)
    delete_packs(packs.layout, ids)


class CollectGate:
    """Puts run together; a collect runs alone, after the puts in progress have finished.

    A put that found a chunk already stored and a collect that deletes it must not interleave.
    Puts that waited for one collect go before the next one starts, so neither starves.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._puts = 0
        self._waiting = 0
        self._collecting = False

    @contextmanager
    def put(self) -> Iterator[None]:
        """Held for the whole of one put."""
        with self._cond:
            self._waiting += 1
            self._cond.wait_for(lambda: not self._collecting)
            self._waiting -= 1
            self._puts += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._puts -= 1
                self._cond.notify_all()

    @contextmanager
    def collect(self) -> Iterator[None]:
        """Held for the whole of one collect."""
        with self._cond:
            self._cond.wait_for(lambda: not self._collecting and not self._waiting)
            self._collecting = True
            self._cond.wait_for(lambda: self._puts == 0)
        try:
            yield
        finally:
            with self._cond:
                self._collecting = False
                self._cond.notify_all()
