"""Crash safety: a writer killed at any moment loses nothing it acknowledged.

The acceptance test SIGKILLs a real writer process twenty times in a row on one repository.
The others reproduce, with plain file operations, the states a kill leaves at each step of
sealing a segment (rare windows for a random kill, so covered here on every run) and the
zero-filled tail a power cut can leave.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from journal.events import ChangeEvent
from journal.framing import ENVELOPE_SIZE, Frame, scan_frames
from journal.keys import MasterSecret
from journal.manifest import MANIFEST_KEY
from journal.repository import Repository
from journal.verify import verify_journal
from tests.journal.crash_writer import MAX_BATCH, event_for, key_for, secret_from_arg

WRITER = Path(__file__).with_name("crash_writer.py")
KILLS = 20
FIRST_ACK_TIMEOUT_S = 30
FULL_CHECK_EVERY = 8


def _run_and_kill(path: Path, key: str, rng: random.Random) -> tuple[list[int], str]:
    """Start a writer, SIGKILL it a random moment after its first ack; return acks and stderr."""
    proc = subprocess.Popen(
        [sys.executable, str(WRITER), str(path), key, str(rng.randrange(2**32))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], FIRST_ACK_TIMEOUT_S)
        first = proc.stdout.readline() if ready else ""
        if first:
            time.sleep(rng.uniform(0.05, 0.6))  # the point: kill at an arbitrary moment
        alive = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)  # a no-op if it already exited and was reaped
        out, err = proc.communicate(timeout=30)
    assert first and alive, f"the writer must run until killed; it exited with: {err}"
    lines = (first + out).split("\n")
    # A kill can cut the last line short; only whole lines were acknowledged.
    return [int(line) for line in lines[:-1]], err


def _check_after_kill(path: Path, secret: MasterSecret | None, acked: int, checked: int) -> int:
    """Reopen, verify, and compare events after ``checked``; return the last seq now held."""
    with Repository.open(path, secret, writable=True) as repo:
        report = verify_journal(repo.log)
        assert report.ok, f"verify after a kill must find nothing: {report.problems}"
        last = repo.log.next_seq - 1
        assert last >= acked, f"acknowledged seq {acked} was lost: the log ends at {last}"
        expect = checked + 1
        for event in repo.log.read(checked + 1):
            assert event.seq == expect, f"sequence gap: expected {expect}, read {event.seq}"
            assert event.key == key_for(expect), f"event {expect} holds another event's key"
            # Recomputing an event costs what writing it did: check the batches around the
            # kill in full, and a sample of the rest (every frame's checksum is verified).
            if expect % FULL_CHECK_EVERY == 0 or expect > acked - MAX_BATCH:
                _assert_same(event, event_for(expect))
            expect += 1
        assert expect == last + 1, f"read stopped at {expect - 1}, the log ends at {last}"
        _check_segment_modes(path, {info.name for info in repo.log.manifest.segments})
    return last


def _assert_same(got: ChangeEvent, want: ChangeEvent) -> None:
    assert (got.key, got.after, got.position, got.source_ts) == (
        want.key,
        want.after,
        want.position,
        want.source_ts,
    ), f"event {got.seq} reads back different from what was appended"


def _check_segment_modes(path: Path, sealed: set[str]) -> None:
    for seg in (path / "journal").glob("*.seg"):
        writable = bool(seg.stat().st_mode & 0o200)
        assert writable != (seg.name in sealed), (
            f"{seg.name}: sealed segments must be read-only and the active one writable "
            f"(sealed={seg.name in sealed}, mode={seg.stat().st_mode & 0o777:o})"
        )


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_sigkill_loses_nothing_acknowledged(tmp_path: Path, encrypted: bool) -> None:
    key = os.urandom(32).hex() if encrypted else "none"
    secret = secret_from_arg(key)
    path = tmp_path / "repo"
    Repository.init(path, secret)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    checked = acked = 0
    for kill in range(1, KILLS + 1):
        acks, err = _run_and_kill(path, key, rng)
        context = f"kill {kill} (seed {seed})"
        assert not err, f"{context}: the writer wrote to stderr: {err}"
        assert acks == sorted(set(acks)) and acks[0] > acked, f"{context}: acks go up: {acks}"
        acked = acks[-1]
        checked = _check_after_kill(path, secret, acked, checked)
    with Repository.open(path, secret) as repo:
        seqs = [e.seq for e in repo.log.read()]
        stats = repo.log.stats()
    assert seqs == list(range(1, checked + 1)), "a final full read sees every event, in order"
    assert stats.sealed_segments >= 5, f"the writers must have sealed segments: {stats}"


# ----------------------------------------------------------- states a kill leaves mid-seal
def _fill(repo: Repository, first: int, count: int) -> None:
    got = repo.log.append([event_for(s) for s in range(first, first + count)])
    assert got.first == first, f"appends continue at {first}, got {got}"


def _assert_intact(path: Path, secret: MasterSecret | None, last: int) -> None:
    with Repository.open(path, secret) as repo:
        report = verify_journal(repo.log)
        assert report.ok, f"the journal must verify: {report.problems}"
        keys = [e.key for e in repo.log.read()]
    assert keys == [event_for(s).key for s in range(1, last + 1)], "every event reads back"


def test_kill_after_index_before_manifest(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        _fill(repo, 1, 50)
        active = repo_path / repo.log.segment_files()[-1][0]
        assert not (repo_path / MANIFEST_KEY).exists(), "the first seal writes the manifest"
        repo.log.seal()
    # Undo the manifest write and the next segment: the segment is read-only and indexed but
    # the manifest does not name it, exactly as a kill between those two steps leaves it.
    (repo_path / MANIFEST_KEY).unlink()
    for seg in (repo_path / "journal").glob("*.seg"):
        if seg != active:
            seg.unlink()
    assert not active.stat().st_mode & 0o222, "sealing made the segment read-only"
    with Repository.open(repo_path, secret, writable=True) as repo:
        assert active.stat().st_mode & 0o200, "the unsealed segment must be writable again"
        _fill(repo, 51, 10)
        repo.log.seal()
        _fill(repo, 61, 5)
    _assert_intact(repo_path, secret, 65)


@pytest.mark.parametrize("header_bytes", [None, 0, 7, 16, 40], ids=lambda n: f"header-{n}")
def test_kill_while_creating_next_segment(
    repo_path: Path, secret: MasterSecret | None, header_bytes: int | None
) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        _fill(repo, 1, 50)
        repo.log.seal()
        new = repo_path / repo.log.segment_files()[-1][0]
    # None: killed before the next segment existed; n: killed after n bytes of its header.
    if header_bytes is None:
        new.unlink()
    else:
        os.truncate(new, header_bytes)
    with Repository.open(repo_path, secret, writable=True) as repo:
        _fill(repo, 51, 10)
    _assert_intact(repo_path, secret, 60)


def _last_frame(segment: Path) -> Frame:
    with open(segment, "rb") as f:
        return [fr for fr in scan_frames(f) if isinstance(fr, Frame)][-1]


@pytest.mark.parametrize("kept", [1, 15, 16, 17, 60, -1], ids=lambda n: f"kept-{n}")
def test_torn_append_then_seal(repo_path: Path, secret: MasterSecret | None, kept: int) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        _fill(repo, 1, 40)
        _fill(repo, 41, 40)
        active = repo_path / repo.log.segment_files()[-1][0]
    torn = _last_frame(active)
    os.truncate(active, (torn.offset if kept > 0 else torn.end) + kept)  # kept bytes of it
    with Repository.open(repo_path, secret, writable=True, segment_max_bytes=1) as repo:
        assert any("torn tail" in note for note in repo.log.notes), repo.log.notes
        assert active.stat().st_size == torn.offset, "the torn append is cut off"
        _fill(repo, 41, 40)  # the segment is over its limit: this append seals it
        assert repo.log.stats().sealed_segments == 1, "a full segment seals on the next append"
    _assert_intact(repo_path, secret, 80)


def test_power_loss_zero_fill_after_a_partial_frame(
    repo_path: Path, secret: MasterSecret | None
) -> None:
    """After a power cut a file can end in zeros: part of the last frame, and beyond it."""
    with Repository.open(repo_path, secret, writable=True) as repo:
        _fill(repo, 1, 40)
        _fill(repo, 41, 40)
        active = repo_path / repo.log.segment_files()[-1][0]
    last = _last_frame(active)
    with open(active, "r+b") as f:
        f.seek(last.offset + ENVELOPE_SIZE + 10)
        f.write(b"\x00" * (len(last.payload) - 10 + 4096))
    with Repository.open(repo_path, secret, writable=True) as repo:
        assert any("torn tail" in note for note in repo.log.notes), repo.log.notes
        assert active.stat().st_size == last.offset, "the writer truncates the torn tail"
        _fill(repo, 41, 40)
    _assert_intact(repo_path, secret, 80)
