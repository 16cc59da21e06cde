"""The segment log: a single writer appends event batches; any number of readers read.

Appends assign gapless sequence numbers under one lock, write one frame per batch, and
*group commit*: a writer that needs durability fsyncs everything written so far, so appends
that queued behind it share that fsync. Segments seal at a size or age limit: fsync, write the
sparse index, record the SHA-256 in the manifest, make the file read-only, start the next.

On open, the writer truncates a torn tail of the active segment (a crash mid-append) and
reports it in ``notes``; nothing before it is lost. Damage anywhere else is refused loudly.

In an encrypted journal each segment is encrypted under its own file key (``FileKeys``), so
``drop_before`` can destroy the oldest segments for good (see ``journal.pruning``). The
journal then starts at ``first_seq``; reads from before it start there.
"""

from __future__ import annotations

import asyncio
import enum
import fcntl
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from journal.catalog import Catalog, Segment
from journal.codec import Codec
from journal.errors import (
    ConfigError,
    CorruptionError,
    HindsightError,
    JournalLocked,
    RepositoryError,
)
from journal.events import ChangeEvent, SeqRange, now_us
from journal.filekeys import FileKeys
from journal.fsutil import fsync_dir, write_all
from journal.manifest import Manifest, SegmentInfo
from journal.protocols import Store
from journal.pruning import DropReport, remove_leftovers
from journal.segments import (
    IndexEntry,
    SeqQuery,
    TimeQuery,
    contiguous,
    encode_batch,
    encode_index,
    scan_segment_from,
    segment_header_frame,
    segment_info,
    segment_name,
)

__all__ = [
    "DEFAULT_FSYNC_INTERVAL_MS",
    "DEFAULT_SEGMENT_MAX_AGE_S",
    "DEFAULT_SEGMENT_MAX_BYTES",
    "DropReport",
    "Durability",
    "LogStats",
    "SegmentLog",
]

DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_SEGMENT_MAX_AGE_S = 3600
DEFAULT_FSYNC_INTERVAL_MS = 200
MAX_BATCH_EVENTS = 4096
_MAX = 2**63 - 1


class Durability(enum.Enum):
    """When an append is fsynced, and so when it counts as acknowledged."""

    BATCH = "batch"  # before append returns: nothing acknowledged is ever lost
    INTERVAL = "interval"  # by a background flush every fsync_interval_ms
    NONE = "none"  # only at seal and close; for tests and throwaway data


class LogStats(NamedTuple):
    """Counts and spans of the whole log."""

    segments: int
    sealed_segments: int
    events: int
    first_seq: int
    last_seq: int
    bytes: int
    min_ts: int | None
    max_ts: int | None


@dataclass
class _Writer:
    """State only the writing process has."""

    fd: int
    lock_fd: int
    size: int
    written: int = 0  # bytes appended by this process, across segments
    synced: int = 0
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    sync_lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


class SegmentLog:
    """Append-only event log in ``root/journal``; see the module docstring."""

    def __init__(
        self,
        root: Path,
        store: Store,
        codec: Codec,
        repo_id: str,
        *,
        writable: bool = False,
        durability: Durability = Durability.BATCH,
        fsync_interval_ms: int = DEFAULT_FSYNC_INTERVAL_MS,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_age_s: int = DEFAULT_SEGMENT_MAX_AGE_S,
        mac_key: bytes | None = None,
        file_keys: FileKeys | None = None,
        clock: Callable[[], int] = now_us,
    ) -> None:
        if codec.cipher is not None and file_keys is None:
            raise ConfigError("an encrypted journal needs file_keys: each segment has its own key")
        self._cat = Catalog(root, store, codec, mac_key, file_keys)
        self.root, self.dir = root, self._cat.dir
        self.store, self.codec, self.repo_id = store, codec, repo_id
        self.durability, self.mac_key, self.clock = durability, mac_key, clock
        self.fsync_interval_s = fsync_interval_ms / 1000
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_age_us = segment_max_age_s * 1_000_000
        self.notes: list[str] = []
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._w: _Writer | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        if writable:
            self._open_writer()
        else:
            self.refresh()

    # ----------------------------------------------------------------- opening
    def refresh(self) -> None:
        """Re-read the manifest and segment list (readers; the writer keeps its own view)."""
        self._cat.refresh()

    @property
    def manifest(self) -> Manifest:
        """The manifest as last read or written."""
        return self._cat.manifest

    @property
    def _segments(self) -> list[Segment]:
        return self._cat.segments

    def _open_writer(self) -> None:
        lock_fd = self._take_lock()
        try:
            self.refresh()
            left = remove_leftovers(self.root, self.dir, self.manifest.first_seq)
            if left:
                self.notes.append(f"removed files of dropped segments: {', '.join(left)}")
            unsealed = [s for s in self._segments if s.info is None]
            if len(unsealed) > 1:
                raise CorruptionError(
                    "an unsealed segment precedes the active one; run `hindsight journal verify`",
                    path=unsealed[0].rel,
                )
            if unsealed:
                fd, size = self._reopen_active(unsealed[-1])
            else:
                fd, size = self._create_segment(self.manifest.last_seq + 1)
        except BaseException:
            os.close(lock_fd)
            raise
        self._w = _Writer(fd, lock_fd, size)
        if self.durability is Durability.INTERVAL:
            threading.Thread(target=self._flush_loop, name="journal-fsync", daemon=True).start()

    def _take_lock(self) -> int:
        fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JournalLocked(
                f"the journal in {self.dir} is already being written by process {holder}; "
                "stop that process (e.g. the daemon) or use a read-only command"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _reopen_active(self, seg: Segment) -> tuple[int, int]:
        scan = scan_segment_from(seg.path, 0, None)
        if scan.bad is not None and not scan.bad.torn:
            raise CorruptionError(
                f"active segment is damaged ({scan.bad.reason}); "
                "run `hindsight journal verify` and see OPERATIONS.md",
                path=seg.rel,
                offset=scan.bad.offset,
            )
        if scan.created_us is None:  # crash while the segment was being created
            seg.path.unlink()
            self._cat.segments.remove(seg)
            return self._create_segment(self.manifest.last_seq + 1)
        expected = self.manifest.last_seq + 1
        if seg.first_seq != expected or not contiguous(scan.entries, expected):
            raise CorruptionError(
                f"active segment does not continue at seq {expected}", path=seg.rel
            )
        if not seg.path.stat().st_mode & 0o200:
            # A crash mid-seal, after the chmod but before the manifest named the segment:
            # it is still the active one, so it must be writable again.
            os.chmod(seg.path, 0o644)
        if scan.bad is not None:
            self._truncate_torn_tail(seg, scan.end, scan.bad.reason)
        seg.entries, seg.scanned_end, seg.created_us = scan.entries, scan.end, scan.created_us
        seg.codec = self._cat.writer_codec(seg.first_seq)
        fd = os.open(seg.path, os.O_WRONLY | os.O_APPEND)
        return fd, scan.end

    def _truncate_torn_tail(self, seg: Segment, end: int, reason: str) -> None:
        lost = seg.path.stat().st_size - end
        os.truncate(seg.path, end)
        fd = os.open(seg.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.notes.append(
            f"{seg.rel}: truncated a torn tail of {lost} bytes at offset {end} ({reason}); "
            "it held only unacknowledged appends"
        )

    def codec_for(self, rel: str) -> Codec:
        """The codec that opens the frames of segment ``rel`` (for verification)."""
        return self._cat.codec_for(rel)

    def _create_segment(self, first_seq: int) -> tuple[int, int]:
        path = self.dir / segment_name(first_seq)
        codec = self._cat.writer_codec(first_seq)  # durable before any frame uses it
        created = self.clock()
        header = segment_header_frame(first_seq, self.repo_id, created)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
        except OSError as exc:
            raise RepositoryError(f"cannot create {path}: {exc.strerror}") from exc
        try:
            write_all(fd, header)
            os.fsync(fd)
            fsync_dir(self.dir)
        except OSError as exc:
            os.close(fd)
            raise RepositoryError(f"cannot start segment {path.name}: {exc.strerror}") from exc
        seg = Segment(first_seq, path, None, [], len(header), created, codec)
        self._segments.append(seg)
        return fd, len(header)

    # ---------------------------------------------------------------- appending
    @property
    def writable(self) -> bool:
        """Whether this instance holds the writer lock."""
        return self._w is not None

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended event will get."""
        if not self._segments:
            return self.manifest.last_seq + 1
        seg = self._segments[-1]
        entries = self._entries(seg)
        if entries:
            return entries[-1].last_seq + 1
        return seg.info.last_seq + 1 if seg.info is not None else seg.first_seq

    @property
    def first_seq(self) -> int:
        """The first sequence number still stored (1 until ``drop_before`` removed some)."""
        return self.manifest.first_seq

    def append(self, events: Sequence[ChangeEvent]) -> SeqRange:
        """Append ``events`` in order; return their sequence numbers once acknowledged.

        With ``Durability.BATCH`` the events are fsynced before this returns. All or none of
        the events are written: a failed write is cut back off. Thread-safe.
        """
        w = self._writer()
        if not events:
            raise ValueError("append needs at least one event")
        with w.write_lock:
            if w.fd < 0:  # the last seal could not start the next segment
                w.fd, w.size = self._create_segment(self.next_seq)
            first = self.next_seq
            self._write_frames(w, events, first)
            target = w.written
            if w.size >= self.segment_max_bytes or self._too_old(self._segments[-1]):
                self._try_seal(w)
        if self.durability is Durability.BATCH:
            self._sync_to(w, target)
        self._notify()
        return SeqRange(first, first + len(events) - 1)

    def _write_frames(self, w: _Writer, events: Sequence[ChangeEvent], first: int) -> None:
        """One write of every frame of the append, so a failure leaves none of them."""
        frames, entries, offset, now = [], [], w.size, self.clock()
        seg = self._segments[-1]
        codec = self._cat.codec_of(seg)
        for i in range(0, len(events), MAX_BATCH_EVENTS):
            batch = events[i : i + MAX_BATCH_EVENTS]
            frame, entry = encode_batch(batch, first + i, codec, now)
            entries.append(entry._replace(offset=offset))
            frames.append(frame)
            offset += len(frame)
        try:
            write_all(w.fd, frames[0] if len(frames) == 1 else b"".join(frames))
        except OSError as exc:
            os.ftruncate(w.fd, w.size)  # never leave part of a frame behind a failed append
            raise RepositoryError(f"cannot append to {seg.rel}: {exc.strerror}") from exc
        assert seg.entries is not None
        seg.entries.extend(entries)
        w.written += offset - w.size
        w.size = offset

    def _try_seal(self, w: _Writer) -> None:
        """Seal after an append; a failure leaves the segment active and is retried later."""
        try:
            self._seal_locked(w)
        except (OSError, HindsightError) as exc:
            self.notes.append(f"sealing {self._segments[-1].rel} failed, will retry: {exc}")

    def _too_old(self, seg: Segment) -> bool:
        created = seg.created_us or 0
        return bool(seg.entries) and self.clock() - created >= self.segment_max_age_us

    def _sync_to(self, w: _Writer, target: int) -> None:
        with w.sync_lock:
            if w.synced >= target:
                return  # another appender's fsync already covered us: group commit
            upto = w.written
            if w.fd >= 0:  # -1 only after a seal, which synced everything before it
                os.fdatasync(w.fd)
            w.synced = max(w.synced, upto)

    def _flush_loop(self) -> None:
        w = self._w
        while w is not None and not w.stop.wait(self.fsync_interval_s):
            if w.synced < w.written:
                self._sync_to(w, w.written)

    def sync(self) -> None:
        """Make every append so far durable, whatever the durability policy."""
        w = self._writer()
        self._sync_to(w, w.written)

    def maybe_seal(self) -> bool:
        """Seal the active segment if it reached its age limit; for a periodic caller."""
        w = self._writer()
        with w.write_lock:
            if self._too_old(self._segments[-1]):
                self._seal_locked(w)
                return True
        return False

    def seal(self) -> None:
        """Seal the active segment now (if it holds any event)."""
        w = self._writer()
        with w.write_lock:
            if self._segments[-1].entries:
                self._seal_locked(w)

    def _seal_locked(self, w: _Writer) -> None:
        """Seal the active segment; on failure it stays active and consistent."""
        seg = self._segments[-1]
        assert seg.entries
        self._sync_to(w, w.written)
        info = segment_info(seg.path, seg.first_seq, seg.entries, self.clock())
        self.store.put(seg.index_key, encode_index(seg.entries))
        os.chmod(seg.path, 0o444)
        self.manifest.segments.append(info)
        try:
            self.manifest.save(self.store, self.mac_key)
        except BaseException:
            self.manifest.segments.pop()
            os.chmod(seg.path, 0o644)
            raise
        seg.info = info
        with w.sync_lock:
            os.close(w.fd)
            w.fd = -1
        w.fd, w.size = self._create_segment(info.last_seq + 1)

    def _writer(self) -> _Writer:
        if self._w is None:
            raise RepositoryError("this journal was opened read-only")
        return self._w

    # ----------------------------------------------------------------- dropping
    def drop_before(self, seq: int, *, dry_run: bool = False) -> DropReport:
        """Remove every sealed segment whose events all precede ``seq``; report what went.

        Only a prefix of the journal goes, never the active segment nor any event at or after
        ``seq``; the journal stays contiguous from its new ``first_seq``. The manifest is
        written first, then the segments' keys are destroyed, then their files unlinked
        (``journal.pruning``). With ``dry_run`` nothing changes. Needs the writer.
        """
        if self._w is None:
            raise RepositoryError(
                "dropping segments needs the journal's writer: open the repository writable "
                "(stop the daemon first if it holds the lock, or drop through it)"
            )
        with self._w.write_lock:
            return self._cat.drop(seq, dry_run)

    def close(self) -> None:
        """Flush and fsync everything, release the writer lock."""
        w, self._w = self._w, None
        if w is None:
            return
        w.stop.set()
        with w.write_lock, w.sync_lock:
            if w.fd >= 0:
                os.fsync(w.fd)
                os.close(w.fd)
        os.close(w.lock_fd)

    def __enter__(self) -> SegmentLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    def _entries(self, seg: Segment) -> list[IndexEntry]:
        return self._cat.entries(seg, scan=self._w is None)

    def read_batches(self, start: int = 1, end: int | None = None) -> Iterator[list[ChangeEvent]]:
        """Batches of events with ``start <= seq <= end``, in order, found by the sparse index.

        A ``start`` before ``first_seq`` (dropped events) reads from ``first_seq``.
        """
        query = SeqQuery(start, end if end is not None else _MAX)
        for batch in self._cat.read(query, reader=self._w is None):
            yield query.trim(batch)

    def read(self, start: int = 1, end: int | None = None) -> Iterator[ChangeEvent]:
        """Events with ``start <= seq <= end``, in sequence order."""
        for batch in self.read_batches(start, end):
            yield from batch

    def read_time(self, start_us: int, end_us: int | None = None) -> Iterator[ChangeEvent]:
        """Events whose source timestamp lies in ``[start_us, end_us]``, in sequence order.

        Segments and batches whose time span misses the range are skipped unread.
        """
        query = TimeQuery(start_us, end_us if end_us is not None else _MAX)
        for batch in self._cat.read(query, reader=self._w is None):
            yield from query.trim(batch)

    async def follow(self, start: int = 1, poll_s: float = 0.2) -> AsyncIterator[ChangeEvent]:
        """Every event from ``start`` on, then new ones as they are appended (forever).

        Wakes at once for appends in this process, within ``poll_s`` for other processes.
        """
        seq = start
        while True:
            for batch in self.read_batches(seq):
                for event in batch:
                    yield event
                seq = batch[-1].seq + 1
            await self._wait_for_append(poll_s)
            if self._w is None:
                self.refresh()

    async def _wait_for_append(self, timeout: float) -> None:
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def _notify(self) -> None:
        for loop, event in list(self._waiters):
            loop.call_soon_threadsafe(event.set)

    # -------------------------------------------------------------------- stats
    def segment_files(self) -> list[tuple[str, SegmentInfo | None]]:
        """(path relative to the repository, manifest entry or None if active) per segment."""
        return [(s.rel, s.info) for s in self._segments]

    def stats(self) -> LogStats:
        """Event counts, sequence and time spans, bytes on disk."""
        entries = self._cat.all_entries(scan=self._w is None)
        spans = [(e.first_seq, e.last_seq, e.min_ts, e.max_ts) for e in entries]
        size = sum(s.path.stat().st_size for s in self._segments if s.path.exists())
        sealed = sum(1 for s in self._segments if s.info is not None)
        if not spans:
            return LogStats(len(self._segments), sealed, 0, 0, 0, size, None, None)
        return LogStats(
            len(self._segments),
            sealed,
            spans[-1][1] - spans[0][0] + 1,
            spans[0][0],
            spans[-1][1],
            size,
            min(s[2] for s in spans),
            max(s[3] for s in spans),
        )
