"""Checksummed frames: the unit of every append-only file Hindsight writes.

A frame is a 16-byte envelope followed by its payload::

    magic "HSF1" | payload length u32 | CRC-32 of payload u32 | CRC-32 of the 12 bytes before u32

The header CRC lets a reader trust the length before reading the payload, so a damaged frame
is skipped and the rest of the file still read. A damaged region that nothing valid follows is
a *torn tail* (an append cut short by a crash); anything else is corruption.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from journal.errors import CorruptionError

__all__ = [
    "ENVELOPE_SIZE",
    "MAX_PAYLOAD",
    "BadFrame",
    "Frame",
    "encode_frame",
    "frame_in",
    "read_frame_at",
    "scan_frames",
]

MAGIC = b"HSF1"
ENVELOPE = struct.Struct("<4sIII")
ENVELOPE_SIZE = ENVELOPE.size
MAX_PAYLOAD = 256 * 1024 * 1024
_RESYNC_BLOCK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame whose checksums verified."""

    offset: int
    payload: bytes

    @property
    def end(self) -> int:
        """Offset just past this frame."""
        return self.offset + ENVELOPE_SIZE + len(self.payload)


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A damaged region ``[offset, end)``; ``torn`` when no valid frame follows it."""

    offset: int
    end: int
    reason: str
    torn: bool


def encode_frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in a checksummed envelope."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"frame payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    head = struct.pack("<4sII", MAGIC, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def _header_ok(head: bytes) -> bool:
    return (
        len(head) == ENVELOPE_SIZE
        and head[:4] == MAGIC
        and zlib.crc32(head[:12]) == ENVELOPE.unpack(head)[3]
        and ENVELOPE.unpack(head)[1] <= MAX_PAYLOAD
    )


def scan_frames(f: BinaryIO, start: int = 0, end: int | None = None) -> Iterator[Frame | BadFrame]:
    """Yield every frame from ``start`` to ``end`` (default: end of file), damaged ones too.

    Stops quietly at a clean end. After a damaged header it resynchronises on the next valid
    envelope, so one flipped bit costs one frame, not the rest of the file.
    """
    size = f.seek(0, 2) if end is None else end
    pos = start
    f.seek(pos)
    while pos < size:
        head = f.read(min(ENVELOPE_SIZE, size - pos))
        if not _header_ok(head):
            nxt = _resync(f, pos + 1, size)
            yield BadFrame(pos, nxt if nxt is not None else size, _header_reason(head), nxt is None)
            if nxt is None:
                return
            pos = nxt
            f.seek(pos)
            continue
        _, length, crc, _ = ENVELOPE.unpack(head)
        frame_end = pos + ENVELOPE_SIZE + length
        if frame_end > size:
            yield BadFrame(pos, size, "file ends inside the frame", torn=True)
            return
        payload = f.read(length)
        if zlib.crc32(payload) != crc:
            # Torn only if nothing valid follows: a crash can leave zeros past the frame too.
            torn = frame_end == size or _resync(f, frame_end, size) is None
            yield BadFrame(pos, frame_end, "payload checksum mismatch", torn)
            f.seek(frame_end)
        else:
            yield Frame(pos, payload)
        pos = frame_end


def _header_reason(head: bytes) -> str:
    if len(head) < ENVELOPE_SIZE:
        return "file ends inside a frame header"
    if head[:4] != MAGIC:
        return "bad frame magic" if any(head) else "zero bytes where a frame should start"
    return "frame header checksum mismatch"


def _resync(f: BinaryIO, pos: int, size: int) -> int | None:
    """Offset of the next valid envelope at or after ``pos``, or None."""
    while pos < size:
        f.seek(pos)
        block = f.read(min(_RESYNC_BLOCK + ENVELOPE_SIZE, size - pos))
        i = block.find(MAGIC)
        while i != -1:
            if _header_ok(block[i : i + ENVELOPE_SIZE]):
                return pos + i
            i = block.find(MAGIC, i + 1)
        if len(block) <= ENVELOPE_SIZE:
            return None
        pos += len(block) - ENVELOPE_SIZE + 1
    return None


def read_frame_at(f: BinaryIO, offset: int, path: str) -> bytes:
    """Read and verify the single frame at ``offset``; raise CorruptionError naming it."""
    f.seek(offset)
    head = f.read(ENVELOPE_SIZE)
    if not _header_ok(head):
        raise CorruptionError(_header_reason(head), path=path, offset=offset)
    _, length, crc, _ = ENVELOPE.unpack(head)
    payload = f.read(length)
    if len(payload) != length:
        raise CorruptionError("file ends inside the frame", path=path, offset=offset)
    if zlib.crc32(payload) != crc:
        raise CorruptionError("payload checksum mismatch", path=path, offset=offset)
    return payload


def frame_in(
    buf: bytes, pos: int, path: str, offset: int, *, payload_crc: bool = True
) -> memoryview:
    """The payload of the frame at ``pos`` in ``buf``, checked, without a copy; ``buf`` was
    read from ``path`` at ``offset`` (where errors point).

    ``payload_crc=False`` leaves the payload's checksum to a caller that checks every byte
    of the payload another way (a content-addressed object, against its id).
    """
    head = buf[pos : pos + ENVELOPE_SIZE]
    if not _header_ok(head):
        raise CorruptionError(_header_reason(head), path=path, offset=offset + pos)
    _, length, crc, _ = ENVELOPE.unpack(head)
    start = pos + ENVELOPE_SIZE
    payload = memoryview(buf)[start : start + length]
    if len(payload) != length:
        raise CorruptionError("file ends inside the frame", path=path, offset=offset + pos)
    if payload_crc and zlib.crc32(payload) != crc:
        raise CorruptionError("payload checksum mismatch", path=path, offset=offset + pos)
    return payload
