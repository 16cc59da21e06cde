"""Backups, retention and pruning over 90 simulated days.

Every day the application changes documents and files; a full backup runs every Sunday and
an incremental one every day, and a prune runs after each. The test checks that exactly the
backups the policy names survive, that each surviving one still restores (its snapshot plus
the journal after it give the state at its cut, and a full read-back verification passes),
and that pruning really frees old journal segments, snapshots and file contents.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bson
import pytest

from compaction.backup_maker import BackupMaker, Scope
from compaction.backup_verify import verify_backup
from compaction.backups import FULL, INCREMENTAL, Backup, BackupCatalog
from compaction.prune import Pruner
from compaction.retention import RestorePoint, RetentionPolicy, TypePolicy, select
from compaction.snapshots import Snapshots, snapshots_of
from journal.errors import ConfigError
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository
from tests.compaction.test_snapshots import oracle, snapshot_state
from tests.conftest import new_key

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
DAY_US = 86_400_000_000


class Clock:
    """Simulated time in microseconds."""

    def __init__(self) -> None:
        self.us = int(START.timestamp() * 1e6)

    def __call__(self) -> int:
        return self.us


def _doc(day: int, i: int) -> ChangeEvent:
    body = bson.encode({"_id": i, "day": day, "text": "hola " * (i % 7)})
    meta = {META_DEPLOYMENT: "mongodb"}
    return ChangeEvent(
        Source.MONGODB, "chat.conversations", f"k{i}", Op.REPLACE, 1, body, meta=meta
    )


def _file(repo: Repository, day: int, name: str) -> ChangeEvent:
    content = f"{name} on day {day}\n".encode() + os.urandom(2048)
    ref = repo.blobs.put_bytes(content)
    image = FileImage(ref.id, ref.size, ref.sha256, 0o644, day)
    return ChangeEvent(Source.FILESYSTEM, "app", name, Op.MODIFY, 1, image)


def _day_of_changes(repo: Repository, clock: Clock, day: int) -> None:
    events = [_doc(day, i) for i in range(day % 5, day % 5 + 4)]
    events += [_file(repo, day, f"kb/base_conocimiento_{day % 3}.json")]
    repo.blobs.flush()
    repo.log.append([e._replace(capture_ts=clock.us, source_ts=clock.us) for e in events])


def _backups(repo: Repository, clock: Clock) -> tuple[Snapshots, BackupCatalog, BackupMaker]:
    """Snapshots, backup records (sealed when the repository is) and a maker on ``clock``."""
    snaps = snapshots_of(repo)
    catalog = BackupCatalog(repo.root, repo.store, repo.record_cipher)
    return snaps, catalog, BackupMaker(repo, snaps, catalog, clock=clock)


def _restores(
    repo: Repository, snaps: Snapshots, backup: Backup, stored: list[ChangeEvent]
) -> None:
    """The backup's snapshot (or its base's) plus the kept journal give the state at its cut."""
    cut = backup.cut_seq
    snap = snaps.catalog.latest(cut)
    assert snap is not None, f"{backup.id}: no snapshot at or before its cut {cut}"
    replay = []
    if cut > snap.cut_seq:
        assert snap.cut_seq + 1 >= repo.log.first_seq, f"{backup.id}: journal pruned too far"
        replay = list(repo.log.read(snap.cut_seq + 1, cut))
    state = oracle(replay, snapshot_state(snaps, snap.id))
    assert state == oracle(stored[:cut]), f"{backup.id} restores to the state at seq {cut}"


# The brief's defaults (full 30 days, incremental 7 days, window 7 days), and a policy that
# keeps incrementals longer than their base fulls: those bases must then stay as snapshots.
POLICIES = {
    "defaults": RetentionPolicy(),
    "long-incrementals": RetentionPolicy(
        full=TypePolicy(keep_last=1),
        incremental=TypePolicy(keep_within_s=14 * 86_400),
        point_in_time_s=86_400,
    ),
}


@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
@pytest.mark.parametrize("policy_name", POLICIES)
def test_ninety_days_keep_exactly_what_the_policy_names_and_each_restores(
    tmp_path: Path, encrypted: bool, policy_name: str
) -> None:
    secret = new_key()
    Repository.init(tmp_path / "repo", secret, encrypt_all=encrypted)
    clock = Clock()
    policy = POLICIES[policy_name]
    stored: list[ChangeEvent] = []  # every event ever appended, for the oracle
    taken: list[RestorePoint] = []
    with Repository.open(tmp_path / "repo", secret, writable=True) as repo:
        snaps, catalog, maker = _backups(repo, clock)
        pruner = Pruner(repo, snaps, catalog, policy, clock=clock, protect_recent_s=0)
        first_blob_bytes = 0
        for day in range(90):
            clock.us = int((START + timedelta(days=day)).timestamp() * 1e6)
            before = repo.log.next_seq
            _day_of_changes(repo, clock, day)
            stored += list(repo.log.read(before))
            clock.us += 3600 * 1_000_000
            sunday = (START + timedelta(days=day)).weekday() == 6
            backup = maker.full(Scope()) if sunday or day == 0 else maker.incremental(Scope())
            assert backup is not None
            taken.append(RestorePoint(backup.id, backup.created_us, backup.type))  # type: ignore[arg-type]
            report = pruner.prune()
            expected = select(taken, policy, clock.us)
            assert sorted(catalog.ids()) == sorted(expected.keep), f"day {day}: {report}"
            taken = [p for p in taken if p.id in expected.keep]
            if day == 10:
                first_blob_bytes = repo.blobs.stats().stored_bytes
        # What is left still restores, and pruning really freed old data.
        for backup in catalog.all():
            _restores(repo, snaps, backup, stored)
            report = verify_backup(repo, snaps, catalog, backup, read_data=True)
            assert report.ok, f"{backup.id}: {report.problems}"
        types = {b.type for b in catalog.all()}
        assert types == {FULL, INCREMENTAL}
        if policy_name == "defaults":
            oldest_full = next(b for b in catalog.all() if b.type == FULL)
            assert oldest_full.created_us >= clock.us - 31 * DAY_US, "fulls older than 30 days"
        assert repo.log.first_seq > 1, "old journal segments were dropped"
        assert len(snaps.catalog.ids()) <= 6, snaps.catalog.ids()
        assert repo.blobs.stats().stored_bytes < 3 * first_blob_bytes, "old contents freed"


def test_delete_refuses_to_break_a_kept_incremental(tmp_path: Path) -> None:
    secret = new_key()
    Repository.init(tmp_path / "repo", secret, encrypt_all=False)
    clock = Clock()
    with Repository.open(tmp_path / "repo", secret, writable=True) as repo:
        snaps, catalog, maker = _backups(repo, clock)
        _day_of_changes(repo, clock, 0)
        full = maker.full(Scope())
        clock.us += DAY_US
        _day_of_changes(repo, clock, 1)
        incremental = maker.incremental(Scope())
        assert incremental is not None and incremental.point["base"] == full.id
        pruner = Pruner(repo, snaps, catalog, RetentionPolicy(), clock=clock)
        with pytest.raises(ConfigError, match=f"base of incremental backup.*{incremental.id}"):
            pruner.delete(full.id)
        assert catalog.ids() == [full.id, incremental.id], "nothing was deleted"
        report = pruner.delete(incremental.id)
        assert report.backups_removed == [incremental.id]
        pruner.delete(full.id)
        assert catalog.ids() == []


def test_backup_metadata_has_exactly_the_briefs_fields(tmp_path: Path) -> None:
    Repository.init(tmp_path / "repo", new_key(), encrypt_all=False)
    clock = Clock()
    with Repository.open(tmp_path / "repo", None, writable=True) as repo:
        _, _, maker = _backups(repo, clock)
        _day_of_changes(repo, clock, 0)
        full = maker.full(Scope())
        clock.us += 1_000_000
        _day_of_changes(repo, clock, 1)
        incremental = maker.incremental(Scope(("mongodb",)))
    fields = {
        "backup_id", "timestamp", "type", "scope", "size", "compressed_size", "encrypted",
        "collections", "files", "verification", "storage",
    }  # fmt: skip
    for backup in (full, incremental):
        assert backup is not None
        m: dict[str, Any] = backup.metadata
        assert set(m) == fields, set(m) ^ fields
        assert set(m["files"]) == {"count", "total_size"}
        assert set(m["verification"]) == {"checksum", "verified", "verified_at"}
        assert set(m["storage"]) == {"location", "path"}
        assert m["verification"]["checksum"].startswith("sha256:")
    assert (
        full.id == "backup_20260101_120000" and full.metadata["timestamp"] == "2026-01-01T12:00:00Z"
    )
    assert full.metadata["collections"] == {"chat.conversations": 4}
    assert full.metadata["files"]["count"] == 1
    assert incremental is not None and incremental.metadata["type"] == INCREMENTAL
    assert incremental.metadata["scope"] == ["mongodb"]
    assert incremental.metadata["files"] == {"count": 0, "total_size": 0}, "out of scope"
    assert incremental.metadata["collections"] == {"chat.conversations": 4}


def test_ids_stay_unique_within_one_second(tmp_path: Path) -> None:
    Repository.init(tmp_path / "repo", new_key(), encrypt_all=False)
    clock = Clock()
    with Repository.open(tmp_path / "repo", None, writable=True) as repo:
        _, catalog, maker = _backups(repo, clock)
        slept: list[float] = []

        def sleep(s: float) -> None:
            slept.append(s)

        first = maker.full(Scope())
        assert catalog.new_id(clock.us, sleep)[0] == "backup_20260101_120001"
        assert slept, "it waits for the next second rather than inventing a time"
        assert first.id == "backup_20260101_120000"
