"""Checksummed frames: round trips, torn tails, damage, resynchronisation."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journal.errors import CorruptionError
from journal.framing import (
    ENVELOPE_SIZE,
    MAX_PAYLOAD,
    BadFrame,
    Frame,
    encode_frame,
    read_frame_at,
    scan_frames,
)

PAYLOADS = [b"", b"x", b"HSF1" * 10, bytes(range(256)) * 3, b"\x00" * 40]


def _scan(data: bytes, start: int = 0, end: int | None = None) -> list[Frame | BadFrame]:
    return list(scan_frames(io.BytesIO(data), start, end))


def _offsets(payloads: list[bytes]) -> list[int]:
    offsets, pos = [], 0
    for p in payloads:
        offsets.append(pos)
        pos += ENVELOPE_SIZE + len(p)
    return offsets


def _flip(data: bytes, offset: int, mask: int = 0x01) -> bytes:
    out = bytearray(data)
    out[offset] ^= mask
    return bytes(out)


@given(st.lists(st.binary(max_size=300), max_size=12))
def test_encode_scan_round_trip(payloads: list[bytes]) -> None:
    data = b"".join(encode_frame(p) for p in payloads)
    got = _scan(data)
    assert all(isinstance(f, Frame) for f in got), f"intact frames all verify: {got}"
    assert [f.payload for f in got if isinstance(f, Frame)] == payloads
    assert [f.offset for f in got] == _offsets(payloads), "offsets are the frame starts"
    assert not got or got[-1].end == len(data), "the last frame ends at the end of the data"


@given(st.lists(st.binary(max_size=100), min_size=3, max_size=8), st.data())
def test_scan_between_frame_boundaries(payloads: list[bytes], data: st.DataObject) -> None:
    blob = b"".join(encode_frame(p) for p in payloads)
    offsets = [*_offsets(payloads), len(blob)]
    i = data.draw(st.integers(0, len(payloads) - 1))
    j = data.draw(st.integers(i + 1, len(payloads)))
    got = _scan(blob, offsets[i], offsets[j])
    assert [f.payload for f in got if isinstance(f, Frame)] == payloads[i:j], (
        "a scan from one boundary to another yields exactly the frames between them"
    )


def test_frame_header_layout() -> None:
    frame = encode_frame(b"payload")
    magic, length, crc, head_crc = struct.unpack_from("<4sIII", frame)
    assert (magic, length, crc) == (b"HSF1", 7, zlib.crc32(b"payload")), "envelope fields"
    assert head_crc == zlib.crc32(frame[:12]), "the header CRC covers the 12 bytes before it"
    assert frame[ENVELOPE_SIZE:] == b"payload"


def test_torn_tail_of_every_length_is_torn() -> None:
    kept = [b"first" * 20, b"second" * 20]
    prefix = b"".join(encode_frame(p) for p in kept)
    last = encode_frame(b"third and last" * 10)
    for cut in range(1, len(last)):
        got = _scan(prefix + last[:cut])
        assert got[:-1] == [Frame(0, kept[0]), Frame(ENVELOPE_SIZE + 100, kept[1])], (
            f"cut at {cut}: the frames before the tear are intact"
        )
        tail = got[-1]
        assert isinstance(tail, BadFrame) and tail.torn, f"cut at {cut}: {tail} must be torn"
        assert (tail.offset, tail.end) == (len(prefix), len(prefix) + cut), (
            f"cut at {cut}: the torn region is the partial frame"
        )


@pytest.mark.parametrize("zeros", [1, 15, 16, 17, 4096], ids=lambda n: f"zeros-{n}")
def test_zero_filled_tail_is_torn(zeros: int) -> None:
    data = encode_frame(b"kept") + b"\x00" * zeros
    got = _scan(data)
    assert isinstance(got[0], Frame) and got[0].payload == b"kept"
    assert len(got) == 2, f"one damaged region after the good frame: {got}"
    assert isinstance(got[1], BadFrame) and got[1].torn, f"zeros at the tail are torn: {got[1]}"
    assert (got[1].offset, got[1].end) == (ENVELOPE_SIZE + 4, len(data))


@pytest.mark.parametrize("kept", [0, 10, 99], ids=lambda n: f"kept-{n}")
def test_partial_frame_then_zero_fill_is_torn(kept: int) -> None:
    """A crash can leave a frame's header, part of its payload, then zeros past its end."""
    frame = encode_frame(b"p" * 100)
    data = encode_frame(b"kept") + frame[: ENVELOPE_SIZE + kept]
    data += b"\x00" * (len(frame) - ENVELOPE_SIZE - kept + 64)
    bad = [f for f in _scan(data) if isinstance(f, BadFrame)]
    assert bad and all(b.torn for b in bad), f"nothing valid follows, so all is torn: {bad}"
    assert bad[0].offset == ENVELOPE_SIZE + 4, "the damage starts at the partial frame"


@pytest.mark.parametrize(
    "where",
    [0, 3, 4, 7, 8, 11, 12, 15, ENVELOPE_SIZE, ENVELOPE_SIZE + 50, ENVELOPE_SIZE + 99],
    ids=lambda n: f"byte-{n}",
)
def test_flipped_bit_costs_one_frame(where: int) -> None:
    payloads = [b"a" * 100, b"b" * 100, b"c" * 100, b"d" * 100]
    offsets = _offsets(payloads)
    data = _flip(b"".join(encode_frame(p) for p in payloads), offsets[1] + where)
    got = _scan(data)
    bad = [f for f in got if isinstance(f, BadFrame)]
    assert len(bad) == 1, f"exactly one damaged region: {got}"
    assert (bad[0].offset, bad[0].end, bad[0].torn) == (offsets[1], offsets[2], False), (
        f"the damage is the second frame and is not torn: {bad[0]}"
    )
    assert [f.payload for f in got if isinstance(f, Frame)] == [b"a" * 100, b"c" * 100, b"d" * 100]


def test_flipped_bit_in_last_frame_payload_is_torn() -> None:
    """Indistinguishable from an append cut short, so the writer may truncate it."""
    data = encode_frame(b"a" * 50) + encode_frame(b"b" * 50)
    (first, bad) = _scan(_flip(data, len(data) - 1))
    assert isinstance(first, Frame) and isinstance(bad, BadFrame)
    assert bad.torn and bad.reason == "payload checksum mismatch", bad


@given(garbage=st.binary(min_size=1, max_size=200).filter(lambda b: b"HSF1" not in b))
def test_resync_after_garbage(garbage: bytes) -> None:
    data = encode_frame(b"before") + garbage + encode_frame(b"after")
    got = _scan(data)
    assert [f.payload for f in got if isinstance(f, Frame)] == [b"before", b"after"]
    bad = [f for f in got if isinstance(f, BadFrame)]
    assert len(bad) == 1 and not bad[0].torn, f"garbage followed by a frame is not torn: {bad}"
    assert (bad[0].offset, bad[0].end) == (ENVELOPE_SIZE + 6, ENVELOPE_SIZE + 6 + len(garbage))


@pytest.mark.parametrize("shift", [-16, 0, 1, 2, 8, 16, 17, 100], ids=lambda n: f"shift{n:+d}")
def test_resync_across_read_blocks(shift: int) -> None:
    """A valid frame after more than a resync block of damage is found wherever it falls."""
    block = 1024 * 1024
    garbage = b"\xff" * (block + shift)  # frame lands around the scanner's block boundary
    data = garbage + encode_frame(b"found")
    got = _scan(data)
    assert [f.payload for f in got if isinstance(f, Frame)] == [b"found"], got
    assert got[0] == BadFrame(0, len(garbage), "bad frame magic", False), got[0]


def test_magic_inside_damage_is_not_a_frame() -> None:
    fake = b"HSF1" + struct.pack("<III", 4, 0, 0)  # magic, but the header CRC is wrong
    data = encode_frame(b"one") + fake + b"junk" + encode_frame(b"two")
    got = _scan(data)
    assert [f.payload for f in got if isinstance(f, Frame)] == [b"one", b"two"], got


def test_oversized_length_is_not_trusted() -> None:
    head = struct.pack("<4sII", b"HSF1", MAX_PAYLOAD + 1, 0)
    data = head + struct.pack("<I", zlib.crc32(head)) + encode_frame(b"next")
    got = _scan(data)
    assert isinstance(got[0], BadFrame) and got[0].end == ENVELOPE_SIZE, got
    assert isinstance(got[1], Frame) and got[1].payload == b"next", got


def test_read_frame_at() -> None:
    data = encode_frame(b"one") + encode_frame(b"two")
    f = io.BytesIO(data)
    assert read_frame_at(f, 0, "x.seg") == b"one"
    assert read_frame_at(f, ENVELOPE_SIZE + 3, "x.seg") == b"two"


@pytest.mark.parametrize(
    ("damage", "offset", "reason"),
    [
        (lambda d: _flip(d, 0), 0, "bad frame magic"),
        (lambda d: _flip(d, 5), 0, "frame header checksum mismatch"),
        (lambda d: _flip(d, ENVELOPE_SIZE + 1), 0, "payload checksum mismatch"),
        (lambda d: d[: ENVELOPE_SIZE + 2], 0, "file ends inside the frame"),
        (lambda d: d[:9], 0, "file ends inside a frame header"),
        (lambda d: d, 3, "bad frame magic"),
        (lambda d: d + b"\x00" * ENVELOPE_SIZE, ENVELOPE_SIZE + 5, "zero bytes where"),
    ],
    ids=[
        "magic",
        "header-crc",
        "payload-crc",
        "short-payload",
        "short-header",
        "misaligned",
        "zeros",
    ],
)
def test_read_frame_at_errors(damage: Callable[[bytes], bytes], offset: int, reason: str) -> None:
    data = damage(encode_frame(b"hello"))
    with pytest.raises(CorruptionError) as info:
        read_frame_at(io.BytesIO(data), offset, "journal/x.seg")
    err = info.value
    assert reason in str(err), f"the message says what is wrong: {err}"
    assert (err.path, err.offset) == ("journal/x.seg", offset), "the error locates the frame"
    assert f"journal/x.seg at offset {offset}" in str(err), f"and the message too: {err}"


def test_encode_rejects_oversized_payload() -> None:
    class Huge(bytes):
        def __len__(self) -> int:
            return MAX_PAYLOAD + 1

    with pytest.raises(ValueError, match="exceeds"):
        encode_frame(Huge(b"x"))
