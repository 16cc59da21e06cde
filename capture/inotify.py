"""The watchdog side of ``capture.watcher``: threads that read inotify and hand events over.

``InotifyBackend`` owns a started watchdog observer and, on Linux, an inotify instance of our
own that reports lost events (a kernel queue overflow, or a failure while handling an event)
instead of only logging them or dying. ``Forwarder`` is the handler scheduled per root: it
passes every event, on watchdog's thread, to a callback. ``ignored`` says which events carry
no change worth hinting, and ``cannot_watch`` explains why a root could not be watched.
Everything here except ``ignored`` and ``cannot_watch`` runs on, or joins, watchdog's threads.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from watchdog import events as wd
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.utils import BaseThread

__all__ = ["Forwarder", "InotifyBackend", "cannot_watch", "ignored"]

log = logging.getLogger("hindsight.capture.watcher")

# Opened and closed-without-writing change nothing, and a directory's "modified" only
# echoes a change to one of its entries, which has its own event.
_EVENT_TYPES: list[type[wd.FileSystemEvent]] = [
    *(wd.FileCreatedEvent, wd.DirCreatedEvent, wd.FileDeletedEvent, wd.DirDeletedEvent),
    *(wd.FileModifiedEvent, wd.FileMovedEvent, wd.DirMovedEvent, wd.FileClosedEvent),
    *(wd.FileAttribEvent, wd.DirAttribEvent),
]
_HINTED_TYPES = frozenset(e.event_type for e in _EVENT_TYPES)


class Forwarder(wd.FileSystemEventHandler):
    """Runs on watchdog's thread: hands every event to ``post``, which must not raise."""

    def __init__(self, post: Callable[[wd.FileSystemEvent], None]) -> None:
        self._post = post

    def dispatch(self, event: wd.FileSystemEvent) -> None:
        self._post(event)


if sys.platform.startswith("linux"):
    from watchdog.observers.inotify import InotifyEmitter
    from watchdog.observers.inotify_c import InotifyEvent, InotifyFD

    class _LossReportingFD(InotifyFD):
        """An inotify instance of our own that tells us when events were lost: the kernel
        queue overflowed (watchdog only logs that), or handling an event failed (which would
        otherwise end this thread, and with it all watching)."""

        def __init__(self, on_lost: Callable[[str], None]) -> None:
            super().__init__()
            self._on_lost = on_lost

        def handle_event(self, event: InotifyEvent) -> None:
            if event.is_queue_overflow:
                self._on_lost("the kernel inotify queue overflowed")
            try:
                super().handle_event(event)
            except Exception as exc:
                self._on_lost(f"watchdog failed on an event: {type(exc).__name__}: {exc}")

    def _new_observer(on_lost: Callable[[str], None]) -> tuple[BaseObserver, BaseThread | None]:
        fd = _LossReportingFD(on_lost)
        fd.start()
        return BaseObserver(InotifyEmitter, inotify_fd=fd), fd

else:

    def _new_observer(on_lost: Callable[[str], None]) -> tuple[BaseObserver, BaseThread | None]:
        return Observer(), None  # losses then show only through the pending bound


class InotifyBackend:
    """A started watchdog observer, and the inotify thread it reads from on Linux."""

    def __init__(self, on_lost: Callable[[str], None]) -> None:
        self.observer, self._fd = _new_observer(on_lost)
        self.observer.start()

    def running(self) -> bool:
        """Whether the observer and inotify threads are alive."""
        return self.observer.is_alive() and (self._fd is None or self._fd.is_alive())

    def schedule(self, handler: wd.FileSystemEventHandler, path: Path) -> ObservedWatch:
        """Watch ``path`` recursively without following symlinks; raises OSError."""
        return self.observer.schedule(
            handler, str(path), recursive=True, event_filter=list(_EVENT_TYPES)
        )

    def unschedule(self, watch: ObservedWatch) -> None:
        try:
            self.observer.unschedule(watch)
        except Exception as exc:  # gone with its directory; nothing left to release
            log.debug("unschedule %s: %s", watch.path, type(exc).__name__)

    def alive(self, watch: ObservedWatch) -> bool:
        """Whether the emitter thread of ``watch`` still runs."""
        return any(e.watch == watch and e.is_alive() for e in list(self.observer.emitters))

    def stop(self) -> None:
        """Stop and join every thread; blocks for at most about half a second."""
        self.observer.stop()
        self.observer.join()
        if self._fd is not None:
            self._fd.stop()
            self._fd.join()


def ignored(event: wd.FileSystemEvent) -> bool:
    """Events that change nothing, or that another event already covers."""
    if event.event_type not in _HINTED_TYPES:
        return True
    if event.event_type == wd.EVENT_TYPE_MODIFIED and event.is_directory:
        return True  # echoes a change of an entry, which has its own event
    # A directory move is followed by one synthetic move per entry: the directory's covers them.
    return event.event_type == wd.EVENT_TYPE_MOVED and event.is_synthetic


def cannot_watch(name: str, path: Path, exc: OSError) -> str:
    """The message for a root ``name`` at ``path`` that could not be watched, with the fix."""
    if exc.errno == errno.ENOSPC:
        why = (
            "the inotify watch limit is reached; raise the fs.inotify.max_user_watches "
            "sysctl or exclude large directory trees"
        )
    elif exc.errno == errno.EMFILE:
        why = "the inotify instance limit is reached; raise fs.inotify.max_user_instances"
    else:
        why = f"{exc.strerror or exc}; check that it is a readable directory"
    return f"cannot watch root {name!r} at {path}: {why}"
