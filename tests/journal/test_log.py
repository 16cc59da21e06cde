"""The segment log through its public API: round trips, sealing, ranges, recovery."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal.errors import AuthError, CorruptionError, RepositoryError
from journal.events import ChangeEvent, Op, SeqRange, Source, now_us
from journal.keys import MasterSecret
from journal.log import Durability
from journal.repository import Repository
from tests.journal.eventgen import conversation, events


def _expected(batch: list[ChangeEvent], first: int) -> list[ChangeEvent]:
    return [e._replace(seq=first + i) for i, e in enumerate(batch)]


@pytest.mark.parametrize("level", [3, None], ids=["zstd", "uncompressed"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(events, min_size=1, max_size=20), min_size=1, max_size=5))
def test_round_trip(
    tmp_path: Path, secret: MasterSecret | None, level: int | None, batches: list[list[ChangeEvent]]
) -> None:
    path = tmp_path / os.urandom(4).hex()
    Repository.init(path, secret)
    written: list[ChangeEvent] = []
    with Repository.open(path, secret, writable=True, compression_level=level) as repo:
        for batch in batches:
            got = repo.log.append(batch)
            assert got.first == len(written) + 1, "sequence numbers must continue without gaps"
            written += _expected(batch, got.first)
    with Repository.open(path, secret) as repo:
        assert list(repo.log.read()) == written, "events must read back exactly as appended"


def test_capture_ts_is_stamped_when_zero(writer: Repository) -> None:
    event = ChangeEvent(Source.SYSTEM, "system", "boot", Op.MARKER, 5)
    writer.log.append([event])
    (back,) = writer.log.read()
    assert back.capture_ts > 0, "a zero capture timestamp is stamped on append"


def test_mixed_capture_ts_only_zeros_are_stamped(writer: Repository) -> None:
    events = [conversation(i)._replace(capture_ts=c) for i, c in enumerate([0, 7, 0, 9])]
    writer.log.append(events)
    stamps = [e.capture_ts for e in writer.log.read()]
    assert stamps[1] == 7 and stamps[3] == 9, "capture times set by the source are kept"
    assert stamps[0] == stamps[2] > 9, "zero capture times get the append time"


def test_seal_by_size_keeps_reading(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret, writable=True, segment_max_bytes=20_000) as repo:
        for i in range(0, 600, 50):
            repo.log.append([conversation(j) for j in range(i, i + 50)])
        stats = repo.log.stats()
    assert stats.sealed_segments >= 3, f"small segments must seal: {stats}"
    assert stats.events == 600 and stats.last_seq == 600
    sealed = [p for p in (repo_path / "journal").glob("*.seg") if not p.stat().st_mode & 0o222]
    assert len(sealed) == stats.sealed_segments, "sealed segments are read-only"
    with Repository.open(repo_path, secret) as repo:
        seqs = [e.seq for e in repo.log.read(123, 456)]
    assert seqs == list(range(123, 457)), "a seq range spanning segments reads exactly"


def test_seal_by_age(repo_path: Path, secret: MasterSecret | None) -> None:
    now = [now_us()]
    with Repository.open(repo_path, secret, writable=True, segment_max_age_s=10) as repo:
        repo.log.clock = lambda: now[0]
        repo.log.append([conversation(1)])
        assert not repo.log.maybe_seal(), "young segment stays open"
        now[0] += 11_000_000
        assert repo.log.maybe_seal(), "segment past its age limit seals"
        assert repo.log.stats().sealed_segments == 1


def test_read_time_skips_by_index(writer: Repository) -> None:
    for i in range(0, 1000, 100):
        writer.log.append([conversation(j) for j in range(i, i + 100)])
    writer.log.seal()
    lo = conversation(250).source_ts
    hi = conversation(260).source_ts
    got = [e.seq for e in writer.log.read_time(lo, hi)]
    assert got == list(range(251, 262)), "time range selects by source timestamp"


def test_reopen_continues_sequence(repo_path: Path, secret: MasterSecret | None) -> None:
    for _ in range(3):
        with Repository.open(repo_path, secret, writable=True) as repo:
            repo.log.append([conversation(1), conversation(2)])
    with Repository.open(repo_path, secret) as repo:
        assert [e.seq for e in repo.log.read()] == list(range(1, 7))


def test_single_writer(writer: Repository, repo_path: Path, secret: MasterSecret | None) -> None:
    with pytest.raises(RepositoryError, match="already being written"):
        Repository.open(repo_path, secret, writable=True)


def test_read_only_cannot_append(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret) as repo, pytest.raises(RepositoryError):
        repo.log.append([conversation(1)])


def test_torn_tail_is_truncated_and_reported(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        repo.log.append([conversation(i) for i in range(10)])
        repo.log.append([conversation(i) for i in range(10, 20)])
    (active,) = (repo_path / "journal").glob("*.seg")
    size = active.stat().st_size
    os.truncate(active, size - 7)
    with Repository.open(repo_path, secret, writable=True) as repo:
        assert any("torn tail" in n for n in repo.log.notes), repo.log.notes
        assert [e.seq for e in repo.log.read()] == list(range(1, 11))
        assert repo.log.append([conversation(99)]).first == 11, "appending resumes after it"


def test_corrupt_middle_of_active_segment_is_refused(
    repo_path: Path, secret: MasterSecret | None
) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        first = repo.log.append([conversation(i) for i in range(10)])
        repo.log.append([conversation(i) for i in range(10, 20)])
    (active,) = (repo_path / "journal").glob("*.seg")
    data = bytearray(active.read_bytes())
    data[200] ^= 0xFF
    active.write_bytes(bytes(data))
    assert first.first == 1
    with pytest.raises(CorruptionError, match="journal verify"):
        Repository.open(repo_path, secret, writable=True)


def test_wrong_key_is_a_clear_error(tmp_path: Path) -> None:
    good = MasterSecret(key=os.urandom(32), origin="good key")
    Repository.init(tmp_path / "r", good)
    with pytest.raises(AuthError, match="does not unlock"):
        Repository.open(tmp_path / "r", MasterSecret(key=os.urandom(32), origin="bad key"))
    with pytest.raises(AuthError, match="encrypted"):
        Repository.open(tmp_path / "r", None)


def test_passphrase_and_key_rotation(tmp_path: Path) -> None:
    secret = MasterSecret(passphrase="correct horse battery staple", origin="passphrase")
    Repository.init(tmp_path / "r", secret)
    with Repository.open(tmp_path / "r", secret, writable=True) as repo:
        repo.log.append([conversation(1)])
        assert repo.rotate_key(secret) == 2
        assert repo.codec.key_id == 2, "new frames use the rotated key at once"
    with Repository.open(tmp_path / "r", secret, writable=True) as repo:
        assert repo.codec.key_id == 2, "and after reopening"
        repo.log.append([conversation(2)])
        assert [e.key for e in repo.log.read()] == [conversation(1).key, conversation(2).key]
    wrong = MasterSecret(passphrase="wrong", origin="passphrase")
    with pytest.raises(AuthError):
        Repository.open(tmp_path / "r", wrong)


def test_durability_modes_all_persist(tmp_path: Path) -> None:
    for mode in Durability:
        path = tmp_path / mode.value
        Repository.init(path, None)
        with Repository.open(path, None, writable=True, durability=mode, fsync_interval_ms=5) as r:
            r.log.append([conversation(1)])
        with Repository.open(path, None) as r:
            assert len(list(r.log.read())) == 1, f"{mode} must persist on close"


async def test_follow_sees_new_appends(writer: Repository) -> None:
    writer.log.append([conversation(1)])
    seen: list[int] = []

    async def consume() -> None:
        async for event in writer.log.follow(1, poll_s=5):
            seen.append(event.seq)
            if len(seen) == 3:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    writer.log.append([conversation(2), conversation(3)])
    await asyncio.wait_for(task, 2)
    assert seen == [1, 2, 3], "follow yields history, then wakes at once for new appends"


async def test_follow_from_another_process_view(
    writer: Repository, repo_path: Path, secret: MasterSecret | None
) -> None:
    reader = Repository.open(repo_path, secret)
    got: list[int] = []

    async def consume() -> None:
        async for event in reader.log.follow(1, poll_s=0.02):
            got.append(event.seq)
            if len(got) == 2:
                return

    task = asyncio.create_task(consume())
    writer.log.append([conversation(1)])
    await asyncio.sleep(0.05)
    writer.log.append([conversation(2)])
    await asyncio.wait_for(task, 2)
    assert got == [1, 2], "a read-only view picks up appends by polling"


def test_concurrent_appends_share_fsyncs(
    writer: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs: list[int] = []
    real = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        time.sleep(0.005)  # a slow disk: appends arriving meanwhile must queue behind this one
        syncs.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    got: dict[int, list[SeqRange]] = {t: [] for t in range(8)}

    def appender(t: int) -> None:
        for i in range(25):
            got[t].append(writer.log.append([conversation(t * 1000 + i)]))

    threads = [threading.Thread(target=appender, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seqs = sorted(r.first for ranges in got.values() for r in ranges)
    assert seqs == list(range(1, 201)), "every append got its own gapless sequence number"
    assert all(r == sorted(r) for r in got.values()), "each thread's appends stay in order"
    assert len(syncs) < 200 / 2, f"group commit: {len(syncs)} fsyncs for 200 appends"
    keys = {e.seq: e.key for e in writer.log.read()}
    for t, ranges in got.items():
        for i, r in enumerate(ranges):
            assert keys[r.first] == conversation(t * 1000 + i).key, "each seq holds its event"


# --- encryption modes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("with_key", "encrypt_all", "mode"),
    [(True, True, "aes-256-gcm"), (True, False, "secrets"), (False, True, "none")],
    ids=["aes-256-gcm", "secrets", "none"],
)
def test_init_records_the_mode(
    tmp_path: Path, with_key: bool, encrypt_all: bool, mode: str
) -> None:
    key = MasterSecret(key=os.urandom(32), origin="k") if with_key else None
    Repository.init(tmp_path / "r", key, encrypt_all=encrypt_all)
    doc = json.loads((tmp_path / "r" / "repository.json").read_text())
    assert doc["encryption"] == mode
    assert (tmp_path / "r" / "keys.json").exists() == with_key, "a key ring exactly with a key"
    with Repository.open(tmp_path / "r", key) as repo:
        assert repo.mode == mode and repo.encrypted == (mode == "aes-256-gcm")


def test_secrets_mode_journal_is_the_same_with_or_without_the_key(tmp_path: Path) -> None:
    key = MasterSecret(key=os.urandom(32), origin="k")
    Repository.init(tmp_path / "r", key, encrypt_all=False)
    with Repository.open(tmp_path / "r", key, writable=True, segment_max_bytes=5_000) as repo:
        repo.log.append([conversation(i) for i in range(60)])
        assert repo.codec.cipher is None, "the journal of a secrets repository is in clear"
    with Repository.open(tmp_path / "r", None, writable=True, segment_max_bytes=5_000) as repo:
        repo.log.append([conversation(i) for i in range(60, 120)])
        assert repo.ring is None
    manifest = json.loads((tmp_path / "r" / "journal" / "manifest.json").read_text())
    assert len(manifest["segments"]) >= 2 and manifest["mac"] is None, "no MAC: no key needed"
    with Repository.open(tmp_path / "r", key) as a, Repository.open(tmp_path / "r") as b:
        assert list(a.log.read()) == list(b.log.read()) and a.log.next_seq == 121
    with pytest.raises(AuthError, match="does not unlock"):
        Repository.open(tmp_path / "r", MasterSecret(key=os.urandom(32), origin="bad key"))


def test_rotation_by_mode(tmp_path: Path) -> None:
    key = MasterSecret(key=os.urandom(32), origin="k")
    Repository.init(tmp_path / "s", key, encrypt_all=False)
    with (
        Repository.open(tmp_path / "s", None, writable=True) as repo,
        pytest.raises(AuthError, match="without its key"),
    ):
        repo.rotate_key(key)
    Repository.init(tmp_path / "n", None)
    with Repository.open(tmp_path / "n", key, writable=True) as repo:
        assert repo.mode == "none", "a key given to a legacy repository is not used"
        with pytest.raises(RepositoryError, match="not encrypted"):
            repo.rotate_key(key)


def test_unknown_mode_is_refused(tmp_path: Path) -> None:
    Repository.init(tmp_path / "r", None)
    path = tmp_path / "r" / "repository.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "encryption": "rot13"}))
    with pytest.raises(RepositoryError, match=r"'rot13'.*upgrade"):
        Repository.open(tmp_path / "r")
