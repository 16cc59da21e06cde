"""Damage is found and located: by ``verify_journal``, and by readers that touch it.

A flipped byte anywhere in a sealed segment must be reported with the segment's path and the
offset of the frame it fell in, must fail a read of that frame's events with an error naming
the file, and must cost nothing else: every other frame still reads back.
"""

from __future__ import annotations

import json
import os
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal.errors import AuthError, CorruptionError
from journal.framing import ENVELOPE_SIZE, Frame, scan_frames
from journal.integrity import Problem
from journal.keys import MasterSecret
from journal.manifest import MANIFEST_KEY, Manifest
from journal.repository import Repository
from journal.segments import KIND_EVENTS, BatchHeader
from journal.verify import JournalReport, verify_journal
from tests.journal.eventgen import conversation

BATCHES_PER_SEGMENT = 4
BATCH = 25
BATCH_HEADER_SIZE = 36


class FrameAt(NamedTuple):
    """One frame of the pristine segment; seqs are 0 for the segment header frame."""

    offset: int
    end: int
    first_seq: int = 0
    last_seq: int = 0

    @property
    def holds_events(self) -> bool:
        return self.first_seq > 0


class Journal(NamedTuple):
    """A repository with sealed segments and a short active one."""

    path: Path
    secret: MasterSecret | None
    segments: list[str]  # relative paths of the sealed segments
    last_seq: int

    def file(self, rel: str) -> Path:
        return self.path / rel

    def frames(self, rel: str) -> list[FrameAt]:
        with open(self.file(rel), "rb") as f:
            frames = [fr for fr in scan_frames(f) if isinstance(fr, Frame)]
        return [_frame_at(fr) for fr in frames]

    def open(self) -> Repository:
        return Repository.open(self.path, self.secret)


def _frame_at(frame: Frame) -> FrameAt:
    head = BatchHeader.unpack(frame.payload)
    if head.kind != KIND_EVENTS:
        return FrameAt(frame.offset, frame.end)
    return FrameAt(frame.offset, frame.end, head.first_seq, head.first_seq + head.event_count - 1)


def _build(path: Path, secret: MasterSecret | None, sealed: int) -> Journal:
    seq = 1
    with Repository.open(path, secret, writable=True) as repo:
        for _ in range(sealed):
            for _ in range(BATCHES_PER_SEGMENT):
                repo.log.append([conversation(i) for i in range(seq, seq + BATCH)])
                seq += BATCH
            repo.log.seal()
        repo.log.append([conversation(seq)])
        rels = [rel for rel, info in repo.log.segment_files() if info is not None]
    return Journal(path, secret, rels, seq)


@pytest.fixture
def journal(repo_path: Path, secret: MasterSecret | None) -> Journal:
    """One sealed segment of four batches, then an active segment holding one event."""
    return _build(repo_path, secret, sealed=1)


@pytest.fixture
def journal3(repo_path: Path, secret: MasterSecret | None) -> Journal:
    """Three sealed segments, then an active one."""
    return _build(repo_path, secret, sealed=3)


@contextmanager
def _rewritten(path: Path, change: Callable[[bytes], bytes]) -> Iterator[None]:
    """Replace a (read-only) file's bytes for the duration; restore them after."""
    original = path.read_bytes()
    mode = path.stat().st_mode
    os.chmod(path, 0o644)
    path.write_bytes(change(original))
    try:
        yield
    finally:
        path.write_bytes(original)
        os.chmod(path, mode)


def _flip(offset: int) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        out = bytearray(data)
        out[offset] ^= 0x40
        return bytes(out)

    return change


def _verify(j: Journal) -> JournalReport:
    with j.open() as repo:
        return verify_journal(repo.log)


def _keys(repo: Repository, first: int, last: int) -> list[str]:
    return [e.key for e in repo.log.read(first, last)]


def _expected_keys(first: int, last: int) -> list[str]:
    return [conversation(i).key for i in range(first, last + 1)]


def _assert_flip_found(j: Journal, offset: int) -> None:
    """Flip the byte at ``offset`` of the sealed segment and check everything that follows."""
    rel = j.segments[0]
    frames = j.frames(rel)
    (hit,) = [fr for fr in frames if fr.offset <= offset < fr.end]
    with _rewritten(j.file(rel), _flip(offset)):
        report = _verify(j)
        with j.open() as repo:
            _assert_located(report, rel, offset, hit)
            _assert_read_fails(repo, rel, hit)
            for fr in frames:
                if fr.holds_events and fr != hit:
                    assert _keys(repo, fr.first_seq, fr.last_seq) == _expected_keys(
                        fr.first_seq, fr.last_seq
                    ), f"damage at {offset} must not cost the frame at {fr.offset}"


def _assert_located(report: JournalReport, rel: str, offset: int, hit: FrameAt) -> None:
    problems = "\n".join(map(str, report.problems))
    assert Problem(rel, None, _SHA_MISMATCH) in report.problems, (
        f"flip at {offset}: the whole-file hash must fail:\n{problems}"
    )
    located = [p for p in report.problems if p.path == rel and p.offset is not None]
    assert any(p.offset == hit.offset for p in located), (
        f"flip at {offset}: a problem must name the frame [{hit.offset}, {hit.end}):\n{problems}"
    )
    assert all(p.offset is None or p.offset >= hit.offset for p in located), (
        f"flip at {offset}: frames before the damaged one are fine:\n{problems}"
    )
    assert {p.path for p in report.problems} == {rel}, (
        f"flip at {offset}: only the damaged segment is reported:\n{problems}"
    )


def _assert_read_fails(repo: Repository, rel: str, hit: FrameAt) -> None:
    if not hit.holds_events:
        return  # the segment header frame holds no events; readers never need it
    with pytest.raises((CorruptionError, AuthError)) as info:
        list(repo.log.read(hit.first_seq, hit.last_seq))
    assert rel in str(info.value), f"the read error names the file: {info.value}"


_SHA_MISMATCH = "SHA-256 does not match the manifest (the sealed file changed)"

# Where to flip, as a function of the sealed segment's frames (0: header frame, 1..: batches).
FIXED = {
    "seg-header-magic": lambda fr: fr[0].offset,
    "seg-header-length": lambda fr: fr[0].offset + 5,
    "seg-header-crc": lambda fr: fr[0].offset + 9,
    "seg-header-head-crc": lambda fr: fr[0].offset + 15,
    "seg-header-payload": lambda fr: fr[0].offset + ENVELOPE_SIZE + 8,
    "seg-header-last-byte": lambda fr: fr[0].end - 1,
    "frame-magic": lambda fr: fr[2].offset + 2,
    "frame-length": lambda fr: fr[2].offset + 4,
    "frame-crc": lambda fr: fr[2].offset + 11,
    "frame-head-crc": lambda fr: fr[2].offset + 12,
    "batch-kind": lambda fr: fr[2].offset + ENVELOPE_SIZE,
    "batch-flags": lambda fr: fr[2].offset + ENVELOPE_SIZE + 2,
    "batch-first-seq": lambda fr: fr[2].offset + ENVELOPE_SIZE + 8,
    "batch-count": lambda fr: fr[2].offset + ENVELOPE_SIZE + 16,
    "batch-max-ts": lambda fr: fr[2].offset + ENVELOPE_SIZE + BATCH_HEADER_SIZE - 1,
    "body-start": lambda fr: fr[1].offset + ENVELOPE_SIZE + BATCH_HEADER_SIZE,
    "body-middle": lambda fr: (fr[3].offset + ENVELOPE_SIZE + fr[3].end) // 2,
    "first-batch-magic": lambda fr: fr[1].offset,
    "last-byte-of-file": lambda fr: fr[-1].end - 1,
}


@pytest.mark.parametrize("where", FIXED.values(), ids=FIXED.keys())
def test_flipped_byte_is_found_and_located(
    journal: Journal, where: Callable[[list[FrameAt]], int]
) -> None:
    _assert_flip_found(journal, where(journal.frames(journal.segments[0])))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fraction=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_flipped_byte_anywhere_is_found(journal: Journal, fraction: float) -> None:
    size = journal.file(journal.segments[0]).stat().st_size
    _assert_flip_found(journal, int(fraction * size))


def test_intact_journal_verifies(journal3: Journal) -> None:
    report = _verify(journal3)
    assert report.ok, f"nothing is damaged: {report.problems}"
    assert report.notes == [], "a cleanly closed journal has no unfinished tail"
    assert (report.segments, report.events) == (4, journal3.last_seq), report
    assert report.frames == 3 * (1 + BATCHES_PER_SEGMENT) + 2, "header and batch frames"
    sizes = sum(p.stat().st_size for p in (journal3.path / "journal").glob("*.seg"))
    assert report.bytes == sizes, "every segment byte was read"


def test_flipped_byte_in_index(journal: Journal) -> None:
    idx_rel = journal.segments[0].removesuffix(".seg") + ".idx"
    idx = journal.file(idx_rel)
    size = idx.stat().st_size
    offsets = sorted({0, 4, 8, 12, ENVELOPE_SIZE, ENVELOPE_SIZE + 5, size - 1})
    offsets += random.Random(size).sample(range(size), 8)
    for offset in offsets:
        with _rewritten(idx, _flip(offset)):
            report = _verify(journal)
            assert [(p.path, p.offset) for p in report.problems] == [(idx_rel, None)], (
                f"flip at {offset} of the index: report the index alone: {report.problems}"
            )
            with journal.open() as repo, pytest.raises(CorruptionError, match=idx_rel):
                list(repo.log.read(1, 1))


def test_tampered_manifest_fails_its_mac(tmp_path: Path) -> None:
    secret = MasterSecret(key=os.urandom(32), origin="test key")
    Repository.init(tmp_path / "repo", secret)
    j = _build(tmp_path / "repo", secret, sealed=2)
    manifest = j.path / MANIFEST_KEY
    doc = json.loads(manifest.read_bytes())
    doc["segments"][0]["last_seq"] -= 1  # hide an event from readers
    # Opened before the edit, as by an operator's long-running `verify`.
    with j.open() as repo, _rewritten(manifest, lambda _: json.dumps(doc).encode()):
        report = verify_journal(repo.log)
    assert [(p.path, p.offset) for p in report.problems] == [(MANIFEST_KEY, None)], (
        f"the edited manifest is reported: {report.problems}"
    )
    assert "MAC" in report.problems[0].reason, report.problems[0]
    with (
        _rewritten(manifest, lambda _: json.dumps(doc).encode()),
        pytest.raises(CorruptionError, match=r"MAC .*journal/manifest\.json"),
    ):
        j.open()


def test_deleted_sealed_segment_is_missing(journal3: Journal) -> None:
    rel = journal3.segments[1]
    (first, last) = _seq_span(journal3, rel)
    journal3.file(rel).unlink()
    report = _verify(journal3)
    assert report.problems == [Problem(rel, None, "segment file is missing")], report.problems
    with journal3.open() as repo:
        with pytest.raises(CorruptionError, match=rel):
            list(repo.log.read(first, last))
        assert _keys(repo, last + 1, journal3.last_seq) == _expected_keys(
            last + 1, journal3.last_seq
        ), "later segments still read"


def _seq_span(j: Journal, rel: str) -> tuple[int, int]:
    frames = [fr for fr in j.frames(rel) if fr.holds_events]
    return frames[0].first_seq, frames[-1].last_seq


def test_segment_dropped_from_manifest_is_a_gap(journal3: Journal) -> None:
    rel = journal3.segments[1]
    (first, last) = _seq_span(journal3, rel)
    after = journal3.frames(journal3.segments[2])[1]
    with journal3.open() as repo:
        manifest = Manifest.load(repo.store, repo.log.mac_key)
        manifest.segments = [s for s in manifest.segments if f"journal/{s.name}" != rel]
        manifest.save(repo.store, repo.log.mac_key)
    journal3.file(rel).unlink()
    journal3.file(rel.removesuffix(".seg") + ".idx").unlink()
    report = _verify(journal3)
    gap = Problem(
        journal3.segments[2], after.offset, f"sequence gap: expected {first}, found {last + 1}"
    )
    assert report.problems == [gap], report.problems


def test_frame_cut_out_is_a_gap(journal: Journal) -> None:
    rel = journal.segments[0]
    cut = journal.frames(rel)[2]
    follow = journal.frames(rel)[3]
    with _rewritten(journal.file(rel), lambda d: d[: cut.offset] + d[cut.end :]):
        report = _verify(journal)
    assert Problem(rel, None, _SHA_MISMATCH) in report.problems, report.problems
    gap = f"sequence gap: expected {cut.first_seq}, found {follow.first_seq}"
    assert Problem(rel, cut.offset, gap) in report.problems, report.problems


def _refit_crcs(data: bytes, frame: FrameAt) -> bytes:
    """Recompute a frame's checksums, as a deliberate tamperer would."""
    payload = data[frame.offset + ENVELOPE_SIZE : frame.end]
    head = struct.pack("<4sII", b"HSF1", len(payload), zlib.crc32(payload))
    head += struct.pack("<I", zlib.crc32(head))
    return data[: frame.offset] + head + data[frame.offset + ENVELOPE_SIZE :]


@pytest.mark.parametrize(
    "at", [ENVELOPE_SIZE + 20, ENVELOPE_SIZE + 40, -1], ids=["header-min-ts", "body", "tag"]
)
def test_tampering_that_keeps_checksums_fails_authentication(tmp_path: Path, at: int) -> None:
    secret = MasterSecret(key=os.urandom(32), origin="test key")
    Repository.init(tmp_path / "repo", secret)
    j = _build(tmp_path / "repo", secret, sealed=1)
    rel = j.segments[0]
    frame = j.frames(rel)[2]
    offset = frame.offset + at if at >= 0 else frame.end + at
    with _rewritten(j.file(rel), lambda d: _refit_crcs(_flip(offset)(d), frame)):
        report = _verify(j)
        with j.open() as repo, pytest.raises(AuthError) as info:
            list(repo.log.read(frame.first_seq, frame.last_seq))
    assert Problem(rel, None, _SHA_MISMATCH) in report.problems, report.problems
    located = [p for p in report.problems if p.offset == frame.offset]
    assert located and "authentication" in located[0].reason, report.problems
    assert f"{rel} at offset {frame.offset}" in str(info.value), (
        f"the authentication error names the frame: {info.value}"
    )
