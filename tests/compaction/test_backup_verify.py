"""``verify_backup``: any damaged byte of a snapshot is found and located."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compaction.backup_maker import BackupMaker, Scope
from compaction.backup_verify import verify_backup
from compaction.backups import Backup, BackupCatalog
from compaction.part_keys import key_index_file
from compaction.snapshots import Snapshots, snapshots_of
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository
from tests.conftest import new_key


@contextmanager
def backed_up(encrypted: bool) -> Iterator[tuple[Repository, Snapshots, BackupCatalog, Backup]]:
    """A repository with documents and files and one full backup of them."""
    with tempfile.TemporaryDirectory() as tmp:
        secret = new_key()
        Repository.init(Path(tmp) / "repo", secret, encrypt_all=encrypted)
        with Repository.open(Path(tmp) / "repo", secret, writable=True) as repo:
            meta = {META_DEPLOYMENT: "mongodb"}
            events = [
                ChangeEvent(Source.MONGODB, "chat.quotes", f"q{i}", Op.INSERT, 1,
                            bson.encode({"_id": i, "total": i * 10}), meta=meta)
                for i in range(20)
            ]  # fmt: skip
            for i in range(3):
                ref = repo.blobs.put_bytes(f"file {i}\n".encode() * 50)
                image = FileImage(ref.id, ref.size, ref.sha256, 0o644, 1)
                events.append(ChangeEvent(Source.FILESYSTEM, "app", f"f{i}", Op.CREATE, 1, image))
            repo.blobs.flush()
            repo.log.append(events)
            snaps = snapshots_of(repo)
            catalog = BackupCatalog(repo.root, repo.store, repo.record_cipher)
            backup = BackupMaker(repo, snaps, catalog).full(Scope())
            yield repo, snaps, catalog, backup


def _snapshot_files(repo: Repository, snaps: Snapshots, backup: Backup) -> list[str]:
    snap = snaps.catalog.load(str(backup.point["snapshot"]))
    parts = sorted({p.file for p in snap.parts()})
    return [snap.key, *parts, *(key_index_file(p) for p in parts)]


Setup = tuple[Repository, Snapshots, BackupCatalog, Backup]


@pytest.fixture(scope="module")
def both_modes() -> Iterator[dict[bool, Setup]]:
    """One backed-up repository per mode, shared: each example undoes its damage."""
    with backed_up(True) as encrypted, backed_up(False) as plain:
        for setup in (encrypted, plain):
            assert verify_backup(*setup[:3], setup[3], read_data=True).ok
        yield {True: encrypted, False: plain}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encrypted=st.booleans(),
    which=st.integers(0, 100),
    where=st.floats(0, 1, exclude_max=True),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_of_a_snapshot_is_reported(
    both_modes: dict[bool, Setup], encrypted: bool, which: int, where: float, bit: int
) -> None:
    repo, snaps, catalog, backup = both_modes[encrypted]
    files = _snapshot_files(repo, snaps, backup)
    rel = files[which % len(files)]
    path = repo.root / rel
    original = path.read_bytes()
    data = bytearray(original)
    offset = int(where * len(data))
    data[offset] ^= 1 << bit
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    try:
        report = verify_backup(repo, snaps, catalog, backup, record=False)
    finally:
        path.write_bytes(original)
    assert not report.ok, f"flipped bit {bit} at {offset} of {rel} went unnoticed"
    assert any(p.path == rel for p in report.problems), (rel, report.problems)


def test_read_data_finds_a_missing_file_content() -> None:
    with backed_up(encrypted=False) as (repo, snaps, catalog, backup):
        for pack in (repo.root / "blobs").rglob("*.pack"):
            pack.chmod(0o644)
            pack.unlink()
        assert verify_backup(repo, snaps, catalog, backup).ok, "without --read-data: manifests"
        report = verify_backup(repo, snaps, catalog, backup, read_data=True)
        assert not report.ok and report.blobs_read == 3
        for name in ("f0", "f1", "f2"):
            assert any(f"({name})" in p.reason for p in report.problems), report.problems
        assert catalog.get(backup.id).metadata["verification"]["verified"] is False
