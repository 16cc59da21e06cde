"""Which journal cut a restore target names: a moment in time, or a backup.

A moment *T* restores the state as captured by *T*: every event appended at or before *T*
(its ``capture_ts``), none after. Capture appends within about a second of a change, and
the journal stamps ``capture_ts`` at append time in sequence order, so the cut is found by
scanning forward from the nearest snapshot at or before *T*: the work is the events between
that snapshot and *T*, never the whole journal.

The *point-in-time window* is the span in which every moment can be rebuilt: from the
oldest moment the repository still has a snapshot or the first event for, to now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from compaction.snapshots import Snapshots
from journal.errors import ConfigError
from journal.events import now_us
from journal.log import SegmentLog

__all__ = ["Window", "cut_at", "window"]


@dataclass(frozen=True)
class Window:
    """Moments that can be restored: ``start_us`` .. ``end_us`` (UTC microseconds)."""

    start_us: int
    end_us: int

    def contains(self, us: int) -> bool:
        return self.start_us <= us <= self.end_us


def window(snapshots: Snapshots, log: SegmentLog, now: int | None = None) -> Window:
    """The point-in-time window of this repository now."""
    end = now_us() if now is None else now
    if log.first_seq <= 1:
        first = next(iter(log.read(1, 1)), None)
        return Window(first.capture_ts if first else end, end)
    ids = snapshots.catalog.ids()
    usable = [i for i in ids if int(i) + 1 >= log.first_seq]
    if not usable:
        return Window(end, end)
    return Window(snapshots.catalog.load(usable[0]).cut_us, end)


def cut_at(snapshots: Snapshots, log: SegmentLog, moment_us: int, describe: str) -> int:
    """The last seq captured at or before ``moment_us``; ConfigError outside the window.

    ``describe`` renders the window for the message (the caller knows the user's time zone).
    """
    span = window(snapshots, log)
    if not span.contains(moment_us):
        raise ConfigError(
            f"{describe} is outside the point-in-time window ({_span(span)}); choose a moment "
            "inside it, or a backup from `hindsight backup list`"
        )
    end = log.next_seq - 1
    last = next(iter(log.read(end, end)), None) if end >= log.first_seq else None
    if last is not None and last.capture_ts <= moment_us:
        return end  # at or after the last change: no scan needed
    start_seq = 0
    for snap_id in reversed(snapshots.catalog.ids()):
        snap = snapshots.catalog.load(snap_id)
        if snap.cut_us <= moment_us and snap.cut_seq + 1 >= log.first_seq:
            start_seq = snap.cut_seq
            break
    cut = start_seq
    for batch in log.read_batches(max(start_seq + 1, log.first_seq)):
        for event in batch:
            if event.capture_ts > moment_us:
                return cut
            cut = event.seq
    return cut


def _span(span: Window) -> str:
    def iso(us: int) -> str:
        return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="seconds")

    return f"{iso(span.start_us)} .. {iso(span.end_us)}"
