"""Segment files: append-only sequences of journal frames, one batch of events per frame.

A segment starts with a header frame (kind 1) and continues with event frames (kind 2). Every
frame payload begins with a 36-byte batch header that a reader can index without decoding the
body; the header is also the AES-GCM associated data, so it cannot be altered unnoticed.
"""

from __future__ import annotations

import bisect
import io
import json
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from journal.avro import CURRENT_SCHEMA_VERSION, decode_events, encode_events
from journal.codec import Codec
from journal.errors import AuthError, CorruptionError
from journal.events import ChangeEvent
from journal.framing import BadFrame, Frame, encode_frame, scan_frames
from journal.fsutil import file_sha256
from journal.manifest import SegmentInfo

__all__ = [
    "KIND_EVENTS",
    "KIND_SEGMENT_HEADER",
    "BatchHeader",
    "IndexEntry",
    "ScanResult",
    "SeqQuery",
    "TimeQuery",
    "contiguous",
    "decode_batch",
    "decode_index",
    "encode_batch",
    "encode_index",
    "iter_frames",
    "scan_segment",
    "scan_segment_from",
    "segment_header_frame",
    "segment_info",
    "segment_name",
]

KIND_SEGMENT_HEADER = 1
KIND_EVENTS = 2
SEGMENT_FORMAT = 1
SUFFIX = ".seg"
_HEADER = struct.Struct("<BBBBIQIqq")


class BatchHeader(NamedTuple):
    """The fixed header at the start of every journal frame payload."""

    kind: int
    schema_version: int
    flags: int
    key_id: int
    first_seq: int
    event_count: int
    min_ts: int
    max_ts: int

    def pack(self) -> bytes:
        """The 36 header bytes."""
        k, v, f, key, first, n, lo, hi = self
        return _HEADER.pack(k, v, f, 0, key, first, n, lo, hi)

    @classmethod
    def unpack(cls, payload: bytes) -> BatchHeader:
        """Parse the header at the start of ``payload``."""
        if len(payload) < _HEADER.size:
            raise CorruptionError("frame too short for a batch header")
        k, v, f, _, key, first, n, lo, hi = _HEADER.unpack_from(payload)
        return cls(k, v, f, key, first, n, lo, hi)


class IndexEntry(NamedTuple):
    """Sparse index entry: where one batch lives and what it covers."""

    offset: int
    first_seq: int
    event_count: int
    min_ts: int
    max_ts: int

    @property
    def last_seq(self) -> int:
        """Sequence number of the batch's last event."""
        return self.first_seq + self.event_count - 1


def segment_name(first_seq: int) -> str:
    """File name of the segment whose first event is ``first_seq``."""
    return f"{first_seq:020d}{SUFFIX}"


def segment_header_frame(first_seq: int, repo_id: str, created_us: int) -> bytes:
    """The frame that opens a new segment."""
    head = BatchHeader(KIND_SEGMENT_HEADER, CURRENT_SCHEMA_VERSION, 0, 0, first_seq, 0, 0, 0)
    meta = {"format": SEGMENT_FORMAT, "repo_id": repo_id, "created_us": created_us}
    return encode_frame(head.pack() + json.dumps(meta, sort_keys=True).encode())


def encode_batch(
    events: Sequence[ChangeEvent], first_seq: int, codec: Codec, capture_ts: int
) -> tuple[bytes, IndexEntry]:
    """One frame holding ``events``, and its index entry (offset still 0)."""
    body = encode_events(events, first_seq, capture_ts)
    stamps = [e.source_ts for e in events]
    lo, hi = min(stamps), max(stamps)
    head = BatchHeader(
        KIND_EVENTS,
        CURRENT_SCHEMA_VERSION,
        codec.flags,
        codec.key_id,
        first_seq,
        len(events),
        lo,
        hi,
    ).pack()
    frame = encode_frame(head + codec.seal(body, head))
    return frame, IndexEntry(0, first_seq, len(events), lo, hi)


def decode_batch(payload: bytes, codec: Codec, path: str, offset: int) -> list[ChangeEvent]:
    """Decode an event frame's payload, naming the place on any failure."""
    try:
        head = BatchHeader.unpack(payload)
        raw = payload[: _HEADER.size]
        body = bytes(codec.open(head.flags, head.key_id, payload[_HEADER.size :], raw))
        events = decode_events(body, head.schema_version)
    except (CorruptionError, AuthError) as exc:
        raise type(exc)(exc.reason, path=path, offset=offset) from exc
    if len(events) != head.event_count or (events and events[0].seq != head.first_seq):
        raise CorruptionError("batch body disagrees with its header", path=path, offset=offset)
    return events


class ScanResult(NamedTuple):
    """What scanning a segment found: its good batches and the first damaged region."""

    entries: list[IndexEntry]
    end: int
    bad: BadFrame | None
    created_us: int | None


def scan_segment(path: Path) -> ScanResult:
    """Index a segment by reading every frame; stop at the first damaged region.

    ``end`` is the offset just past the last good frame: where appending may continue.
    """
    return scan_segment_from(path, 0, None)


def scan_segment_from(path: Path, start: int, created_us: int | None) -> ScanResult:
    """``scan_segment`` continuing at ``start`` (a frame boundary found by an earlier scan)."""
    entries: list[IndexEntry] = []
    end = start
    with open(path, "rb") as f:
        for item in scan_frames(f, start):
            if isinstance(item, BadFrame):
                return ScanResult(entries, end, item, created_us)
            head = BatchHeader.unpack(item.payload)
            if head.kind == KIND_SEGMENT_HEADER and item.offset == 0:
                created_us = _header_created_us(item.payload)
            elif head.kind == KIND_EVENTS and created_us is not None:
                entries.append(_entry(item, head))
            else:
                bad = BadFrame(item.offset, item.end, f"unexpected frame kind {head.kind}", False)
                return ScanResult(entries, end, bad, created_us)
            end = item.end
    return ScanResult(entries, end, None, created_us)


def _header_created_us(payload: bytes) -> int:
    try:
        return int(json.loads(payload[_HEADER.size :])["created_us"])
    except (ValueError, KeyError, TypeError):
        return 0


def _entry(frame: Frame, head: BatchHeader) -> IndexEntry:
    return IndexEntry(frame.offset, head.first_seq, head.event_count, head.min_ts, head.max_ts)


def iter_frames(path: Path, start: int, end: int) -> Iterator[Frame | BadFrame]:
    """Frames of ``path`` in ``[start, end)``."""
    with open(path, "rb") as f:
        yield from scan_frames(f, start, end)


_ENTRY = struct.Struct("<QQIqq")
_INDEX_MAGIC = b"HSIX\x01"


def encode_index(entries: Sequence[IndexEntry]) -> bytes:
    """A sealed segment's sparse index file: one checksummed frame of packed entries."""
    return encode_frame(_INDEX_MAGIC + b"".join(_ENTRY.pack(*e) for e in entries))


def decode_index(data: bytes, rel: str) -> list[IndexEntry]:
    """Parse an index file written by ``encode_index``."""
    frames = list(scan_frames(io.BytesIO(data)))
    if len(frames) != 1 or not isinstance(frames[0], Frame):
        raise CorruptionError("index file is damaged", path=rel, offset=0)
    payload = frames[0].payload
    if not payload.startswith(_INDEX_MAGIC) or (len(payload) - 5) % _ENTRY.size:
        raise CorruptionError("not a segment index", path=rel, offset=0)
    return [IndexEntry(*t) for t in _ENTRY.iter_unpack(payload[len(_INDEX_MAGIC) :])]


def contiguous(entries: Sequence[IndexEntry], first: int) -> bool:
    """Whether ``entries`` number their events from ``first`` on without a gap."""
    for e in entries:
        if e.first_seq != first:
            return False
        first = e.last_seq + 1
    return True


def segment_info(
    path: Path, first_seq: int, entries: Sequence[IndexEntry], sealed_us: int
) -> SegmentInfo:
    """The manifest entry of a segment about to be sealed (hashes the whole file)."""
    return SegmentInfo(
        name=path.name,
        first_seq=first_seq,
        last_seq=entries[-1].last_seq,
        size=path.stat().st_size,
        sha256=file_sha256(path).hex(),
        min_ts=min(e.min_ts for e in entries),
        max_ts=max(e.max_ts for e in entries),
        sealed_us=sealed_us,
    )


class SeqQuery(NamedTuple):
    """Events ``start <= seq <= end``: batches found by binary search in the sparse index."""

    start: int
    end: int

    def wants(self, info: SegmentInfo) -> bool:
        return info.last_seq >= self.start and info.first_seq <= self.end

    def pick(self, entries: list[IndexEntry]) -> list[IndexEntry]:
        lo = bisect.bisect_left(entries, self.start, key=lambda e: e.last_seq)
        hi = bisect.bisect_right(entries, self.end, key=lambda e: e.first_seq)
        return entries[lo:hi]

    def trim(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        if batch[0].seq >= self.start and batch[-1].seq <= self.end:
            return batch
        return batch[max(0, self.start - batch[0].seq) : self.end - batch[0].seq + 1]


class TimeQuery(NamedTuple):
    """Events with ``lo <= source_ts <= hi``: batches whose time span overlaps the range."""

    lo: int
    hi: int

    def wants(self, info: SegmentInfo) -> bool:
        return info.max_ts >= self.lo and info.min_ts <= self.hi

    def pick(self, entries: list[IndexEntry]) -> list[IndexEntry]:
        return [e for e in entries if e.max_ts >= self.lo and e.min_ts <= self.hi]

    def trim(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        return [e for e in batch if self.lo <= e.source_ts <= self.hi]
