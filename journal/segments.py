"""Segment files: append-only sequences of journal frames, one batch of events per frame.

A segment starts with a header frame (kind 1) and continues with event frames (kind 2). Every
frame payload begins with a 36-byte batch header that a reader can index without decoding the
body; the header is also the AES-GCM associated data, so it cannot be altered unnoticed.
"""

from __future__ import annotations

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
from journal.framing import BadFrame, Frame, encode_frame, read_frame_at, scan_frames

__all__ = [
    "KIND_EVENTS",
    "KIND_SEGMENT_HEADER",
    "BatchHeader",
    "IndexEntry",
    "decode_batch",
    "encode_batch",
    "segment_header_frame",
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
        body = codec.open(head.flags, head.key_id, payload[_HEADER.size :], raw)
        events = decode_events(body, head.schema_version)
    except (CorruptionError, AuthError) as exc:
        raise type(exc)(exc.reason, path=path, offset=offset) from exc
    if len(events) != head.event_count or (events and events[0].seq != head.first_seq):
        raise CorruptionError("batch body disagrees with its header", path=path, offset=offset)
    return events


def read_batch_at(path: Path, offset: int, codec: Codec, rel: str) -> list[ChangeEvent]:
    """Read, verify and decode the single batch at ``offset``."""
    with open(path, "rb") as f:
        return decode_batch(read_frame_at(f, offset, rel), codec, rel, offset)


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
    frames = list(scan_frames_bytes(data))
    if len(frames) != 1 or not isinstance(frames[0], Frame):
        raise CorruptionError("index file is damaged", path=rel, offset=0)
    payload = frames[0].payload
    if not payload.startswith(_INDEX_MAGIC) or (len(payload) - 5) % _ENTRY.size:
        raise CorruptionError("not a segment index", path=rel, offset=0)
    return [IndexEntry(*t) for t in _ENTRY.iter_unpack(payload[len(_INDEX_MAGIC) :])]


def scan_frames_bytes(data: bytes) -> Iterator[Frame | BadFrame]:
    """``scan_frames`` over bytes already in memory."""
    yield from scan_frames(io.BytesIO(data))
