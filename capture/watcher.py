"""Filesystem watcher: turns inotify events into *hints* about which paths to re-examine.

A hint says "this path may have changed" (for a move: "look at the old and the new path");
it never says what changed. The consumer (``capture.filesystem``) re-examines each hinted path
against the last known state and appends whatever events make the journal true again, so
duplicate, spurious or reordered hints are harmless.

Why hints and not events: watchers lose events. The kernel queue overflows under a burst, the
inotify watch limit can be reached, a directory filled before its watch is added hides its
first files, a root can vanish, and nothing is seen while the daemon is down. The watcher is
therefore only a latency optimisation; the periodic reconciling scan is the safety net. When
the watcher knows it lost something (queue overflow, too many pending paths, a vanished root,
an internal error) it says so with one ``rescan`` hint for the root, which asks for that scan
now rather than at its next scheduled run.

Hint kinds:

    changed   relpath was created, written, truncated, chmod-ed, or re-created
    deleted   relpath is gone (a directory: everything that was under it)
    moved     relpath was renamed from old_relpath (a directory: its whole subtree)
    rescan    relpath is "": events were lost, reconcile the whole root

Coalescing: raw events for one path wait until none has arrived for ``settle_s``, but never
longer than ``max_wait_s`` after the first one, so a file written continuously is still hinted
that often. Watchdog's threads only stamp each event and hand it to the event loop with
``call_soon_threadsafe``; every other piece of state lives on the loop. The folding rules
are in ``capture.coalescer``, the watchdog threads and inotify specifics in ``capture.inotify``.

Limits: excluded trees are filtered here, but watchdog still places inotify watches in them,
and it silently skips subdirectories it cannot watch (for example at the watch limit); the
scan covers both. A renamed file is hinted up to half a second later than a written one,
because watchdog holds each rename's first half back to pair it with the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Self

from watchdog import events as wd
from watchdog.observers.api import ObservedWatch

from capture.coalescer import Coalescer, HintKind
from capture.inotify import Forwarder, InotifyBackend, cannot_watch, ignored
from journal.errors import ConfigError, SourceUnavailable

__all__ = [
    "DEFAULT_MAX_PENDING",
    "DEFAULT_MAX_WAIT_S",
    "DEFAULT_RECHECK_S",
    "DEFAULT_SETTLE_S",
    "Hint",
    "HintKind",
    "PathWatcher",
    "Wanted",
]

log = logging.getLogger("hindsight.capture.watcher")

DEFAULT_SETTLE_S = 0.1
DEFAULT_MAX_WAIT_S = 0.5
DEFAULT_MAX_PENDING = 100_000
DEFAULT_RECHECK_S = 5.0
_MIN_TIMER_S = 0.01  # re-arm no faster than this, so a steady stream costs bounded CPU
_EARLY_S = 0.002  # a loop timer may fire a hair before its deadline
_DIR_CACHE_LIMIT = 4096

Wanted = Callable[[str, str, bool], bool]
"""``wanted(root_name, relpath, is_dir)``: whether a path is protected; False prunes a tree."""


@dataclass(frozen=True, slots=True)
class Hint:
    """A path of a root that may differ from its last known state; see the module docstring.

    ``first_seen`` is the ``time.monotonic()`` of the first raw event folded into the hint.
    """

    root: str
    relpath: str
    kind: HintKind
    old_relpath: str | None = None
    first_seen: float = field(default_factory=time.monotonic)


@dataclass
class _Root:
    """A watched root: its resolved path, and its watch while it has one."""

    name: str
    path: Path
    watch: ObservedWatch | None = None
    ident: tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the directory being watched

    @property
    def prefix(self) -> str:
        return str(self.path).rstrip(os.sep) + os.sep

    def rel(self, path: str | bytes) -> str | None:
        """``path`` relative to the root as POSIX, "" for the root, None when outside."""
        text = os.fsdecode(path)
        if text == str(self.path):
            return ""
        if not text or not text.startswith(self.prefix):
            return None
        rel = text[len(self.prefix) :]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")


def _check_args(
    roots: Sequence[tuple[str, Path]], settle_s: float, max_wait_s: float, max_pending: int
) -> None:
    names = [name for name, _ in roots]
    if not names or len(set(names)) != len(names) or not all(names):
        raise ConfigError(f"watcher roots need distinct, non-empty names (got {names!r})")
    if not 0 <= settle_s <= max_wait_s:
        raise ConfigError(f"need 0 <= settle_s <= max_wait_s (got {settle_s}, {max_wait_s})")
    if max_pending < 1:
        raise ConfigError(f"max_pending must be at least 1 (got {max_pending})")


# ---------------------------------------------------------------------------- the watcher
class PathWatcher:
    """Watches protected roots and yields coalesced ``Hint``s; an async context manager.

    ``async with PathWatcher(roots, wanted) as watcher: async for hint in watcher: ...``, or
    ``await get()`` then ``get_ready()`` to batch what else is due; ``drain()`` also takes
    the hints still settling, and leaving the context releases them to the readers.
    Entering raises ``SourceUnavailable`` when a root cannot be watched. Afterwards nothing
    raises: lost events, a vanished root and internal errors are logged and turn into
    ``rescan`` hints. ``check_roots`` runs every ``recheck_s`` to re-watch a root that came
    back. Not thread-safe: use it from the event loop that entered it.
    """

    def __init__(
        self,
        roots: Sequence[tuple[str, Path]],
        wanted: Wanted,
        settle_s: float = DEFAULT_SETTLE_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        *,
        max_pending: int = DEFAULT_MAX_PENDING,
        recheck_s: float = DEFAULT_RECHECK_S,
    ) -> None:
        _check_args(roots, settle_s, max_wait_s, max_pending)
        self._roots = [_Root(name, Path(path).resolve()) for name, path in roots]
        self._wanted = wanted
        self._coalescer: Coalescer[Hint] = Coalescer(settle_s, max_wait_s, Hint)
        self._max_pending, self._recheck_s = max_pending, recheck_s
        self._ready: deque[Hint] = deque()
        self._rescan_queued: set[str] = set()
        self._wakeup = asyncio.Event()
        self._dir_cache: dict[tuple[str, str], bool] = {}
        self._held: list[tuple[_Root, wd.FileSystemEvent, float]] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backend: InotifyBackend | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._recheck_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._dropped = 0
        self._rescans = 0

    @property
    def dropped(self) -> int:
        """Raw events and pending paths discarded so far (kernel losses are not countable)."""
        return self._dropped

    @property
    def rescans(self) -> int:
        """Rescan hints emitted so far."""
        return self._rescans

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("a PathWatcher can be entered only once")
        self._loop = asyncio.get_running_loop()
        try:
            self._backend = InotifyBackend(self._post_lost)
        except OSError as exc:
            raise SourceUnavailable(
                cannot_watch(self._roots[0].name, self._roots[0].path, exc)
            ) from exc
        for root in self._roots:
            try:
                self._watch(root)
            except OSError as exc:
                await self.__aexit__(None, None, None)
                raise SourceUnavailable(cannot_watch(root.name, root.path, exc)) from exc
        self._arm_recheck()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        backend, self._backend = self._backend, None
        try:
            if backend is not None:
                await asyncio.to_thread(backend.stop)
        finally:
            self._close()

    def _close(self) -> None:
        """Cancel timers, release every pending hint and wake the readers."""
        for timer in (self._flush_timer, self._recheck_timer):
            if timer is not None:
                timer.cancel()
        self._flush_timer = self._recheck_timer = None
        for hint in self._coalescer.pop_all():
            self._deliver(hint)
        self._closed = True
        self._wakeup.set()

    # ------------------------------------------------------------------ delivery
    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Hint:
        hint = await self._next()
        if hint is None:
            raise StopAsyncIteration
        return hint

    async def get(self) -> Hint:
        """Wait for the next hint; raises RuntimeError once closed and empty."""
        hint = await self._next()
        if hint is None:
            raise RuntimeError("the watcher is closed and has no more hints")
        return hint

    def get_ready(self) -> list[Hint]:
        """Return the hints that are due now, without waiting (to batch after ``get``)."""
        hints = []
        while self._ready:
            hints.append(self._pop_ready())
        return hints

    def drain(self) -> list[Hint]:
        """Return every hint not yet taken, including those still settling (at shutdown)."""
        for hint in self._coalescer.pop_all():
            self._deliver(hint)
        return self.get_ready()

    async def _next(self) -> Hint | None:
        if self._loop is None:
            raise RuntimeError("enter the watcher with `async with` before reading hints")
        while not self._ready:
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pop_ready()

    def _pop_ready(self) -> Hint:
        hint = self._ready.popleft()
        if hint.kind == "rescan":
            self._rescan_queued.discard(hint.root)
        return hint

    def _deliver(self, hint: Hint) -> None:
        self._ready.append(hint)
        self._wakeup.set()

    def _rescan(self, root_name: str) -> None:
        """Queue one rescan hint for the root unless one is already waiting."""
        if root_name in self._rescan_queued:
            return
        self._rescan_queued.add(root_name)
        self._rescans += 1
        self._deliver(Hint(root_name, "", "rescan", None, time.monotonic()))

    # ------------------------------------------------------------------ test hook
    def pause_delivery(self) -> None:
        """Test hook: hold raw events back from now on, as if the kernel were losing them."""
        if self._held is None:
            self._held = []

    def resume_delivery(self, *, drop: bool = True) -> None:
        """End a pause. With ``drop`` the held events are discarded and every root gets a
        rescan hint (the lost-events path); without it they are applied in order."""
        held, self._held = self._held or [], None
        if not drop:
            for args in held:
                self._on_event(*args)
            return
        self._dropped += len(held)
        log.warning("watcher delivery paused: %d raw events dropped, rescanning", len(held))
        for root in self._roots:
            self._rescan(root.name)

    # ------------------------------------------------------------------ raw events
    def _post(self, root: _Root, event: wd.FileSystemEvent) -> None:
        """On watchdog's thread: stamp the event and hand it to the loop."""
        self._call_soon(self._on_event, root, event, time.monotonic())

    def _post_lost(self, reason: str) -> None:
        """On the inotify thread: events were lost."""
        self._call_soon(self._overflow, reason)

    def _call_soon(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nothing left to tell
            loop.call_soon_threadsafe(fn, *args)

    def _on_event(self, root: _Root, event: wd.FileSystemEvent, at: float) -> None:
        if self._closed:
            return
        if self._held is not None:
            self._held.append((root, event, at))
            return
        try:
            self._apply(root, event, at)
        except Exception as exc:  # a bad event or predicate must not stop capture
            log.warning(
                "watcher could not handle an event under root %r (%s: %s); rescanning it",
                root.name,
                type(exc).__name__,
                exc,
            )
            self._rescan(root.name)

    def _apply(self, root: _Root, event: wd.FileSystemEvent, at: float) -> None:
        if ignored(event):
            return
        src = root.rel(event.src_path)
        if event.event_type == wd.EVENT_TYPE_MOVED:
            dest = root.rel(event.dest_path)
            self._apply_move(root.name, src, dest, event.is_directory, at)
        elif src == "" and event.event_type == wd.EVENT_TYPE_DELETED:
            self._lose(root, "the root directory was deleted")
        elif src is not None and self._wants(root.name, src, event.is_directory):
            kind: HintKind = "deleted" if event.event_type == wd.EVENT_TYPE_DELETED else "changed"
            self._record(root.name, src, kind, None, at)

    def _apply_move(
        self, root: str, src: str | None, dest: str | None, is_dir: bool, at: float
    ) -> None:
        """A move seen from this root: out of it is a deletion, into it a creation."""
        src_ok = src is not None and self._wants(root, src, is_dir)
        dest_ok = dest is not None and self._wants(root, dest, is_dir)
        if src_ok and dest_ok and src is not None and dest is not None:
            self._record(root, dest, "moved", src, at)
        elif dest_ok and dest is not None:
            self._record(root, dest, "changed", None, at)
        elif src_ok and src is not None:
            self._record(root, src, "deleted", None, at)

    def _wants(self, root: str, relpath: str, is_dir: bool) -> bool:
        if not relpath:
            return True
        return self._dir_wanted(root, relpath.rpartition("/")[0]) and self._wanted(
            root, relpath, is_dir
        )

    def _dir_wanted(self, root: str, reldir: str) -> bool:
        """Whether neither ``reldir`` nor any directory above it is excluded; cached."""
        if not reldir:
            return True
        wanted = self._dir_cache.get((root, reldir))
        if wanted is None:
            parent = reldir.rpartition("/")[0]
            wanted = self._dir_wanted(root, parent) and self._wanted(root, reldir, True)
            if len(self._dir_cache) >= _DIR_CACHE_LIMIT:
                self._dir_cache.clear()
            self._dir_cache[(root, reldir)] = wanted
        return wanted

    def _record(self, root: str, relpath: str, kind: HintKind, old: str | None, at: float) -> None:
        self._coalescer.add(root, relpath, kind, old, at)
        if len(self._coalescer) + len(self._ready) > self._max_pending:
            self._overflow(f"more than {self._max_pending} paths pending")
        else:
            self._arm_flush(0.0)

    def _overflow(self, reason: str) -> None:
        """Events were or would be lost: drop what is pending and rescan every root."""
        if self._closed:
            return
        lost = self._coalescer.clear() + self._clear_ready()
        self._dropped += lost
        log.warning("watcher lost events (%s); dropped %d pending paths, rescanning", reason, lost)
        for root in self._roots:
            self._rescan(root.name)

    def _clear_ready(self) -> int:
        kept = [h for h in self._ready if h.kind == "rescan"]
        dropped = len(self._ready) - len(kept)
        self._ready = deque(kept)
        return dropped

    # ------------------------------------------------------------------ timers
    def _arm_flush(self, min_delay: float) -> None:
        if self._flush_timer is not None or self._loop is None or self._closed:
            return
        due = self._coalescer.next_due()
        if due is not None:
            delay = max(due - time.monotonic(), min_delay)
            self._flush_timer = self._loop.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_timer = None
        for hint in self._coalescer.pop_due(time.monotonic() + _EARLY_S):
            self._deliver(hint)
        self._arm_flush(_MIN_TIMER_S)

    def _arm_recheck(self) -> None:
        if self._loop is not None and not self._closed:
            self._recheck_timer = self._loop.call_later(self._recheck_s, self._recheck)

    def _recheck(self) -> None:
        try:
            self.check_roots()
        except Exception as exc:  # the periodic check must keep running
            log.warning("watcher root check failed (%s: %s)", type(exc).__name__, exc)
        self._arm_recheck()

    # ------------------------------------------------------------------ roots
    def check_roots(self) -> None:
        """One-shot: stop watching roots that vanished, were replaced or lost their watch,
        and watch again those that are back. Each change is logged and gets a rescan hint."""
        if self._backend is None:
            return
        if not self._backend.running():
            self._restart_backend(self._backend)
        for root in self._roots:
            problem = self._root_problem(root, self._backend)
            if problem:
                self._lose(root, problem)
            if root.watch is None:
                self._rewatch(root)

    def _restart_backend(self, old: InotifyBackend) -> None:
        log.warning("watcher threads stopped; starting them again and rescanning")
        self._backend = InotifyBackend(self._post_lost)
        for root in self._roots:
            root.watch = None
        old.stop()

    def _root_problem(self, root: _Root, backend: InotifyBackend) -> str | None:
        if root.watch is None:
            return None
        try:
            st = os.stat(root.path)
        except OSError:
            return "the root directory is gone"
        if (st.st_dev, st.st_ino) != root.ident:
            return "the root directory was replaced"
        if not backend.alive(root.watch):
            return "its watch stopped"
        return None

    def _watch(self, root: _Root) -> None:
        """Start watching a root; raises OSError when it cannot be watched."""
        assert self._backend is not None
        st = os.stat(root.path)
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(root.path))
        if not os.access(root.path, os.R_OK | os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(root.path))
        handler = Forwarder(partial(self._post, root))
        root.watch = self._backend.schedule(handler, root.path)
        root.ident = (st.st_dev, st.st_ino)

    def _lose(self, root: _Root, reason: str) -> None:
        if root.watch is None or self._backend is None:
            return
        log.warning(
            "root %r (%s): %s; rescanning, will watch it again", root.name, root.path, reason
        )
        self._backend.unschedule(root.watch)
        root.watch = None
        self._rescan(root.name)

    def _rewatch(self, root: _Root) -> None:
        try:
            self._watch(root)
        except OSError as exc:
            level = logging.DEBUG if exc.errno in (errno.ENOENT, errno.ENOTDIR) else logging.WARNING
            log.log(level, "%s", cannot_watch(root.name, root.path, exc))
            return
        log.warning("root %r (%s) is back; watching it again, rescanning", root.name, root.path)
        self._rescan(root.name)
