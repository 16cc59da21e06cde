"""Per-file keys and crypto-shredding: every encrypted segment and pack has its own key, and
destroying it makes any surviving copy of the data undecryptable, even with the master key.
Also: key rotation, and data written before per-file keys."""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from journal import fsutil
from journal.blobs.objects import OBJECT_HEADER
from journal.codec import KEY_ID_FILE, AesGcm
from journal.errors import AuthError
from journal.filekeys import PACKS, SEGMENTS, FileKeys
from journal.framing import Frame, scan_frames
from journal.keys import KeyRing, MasterSecret
from journal.repository import Repository
from journal.segments import BatchHeader, decode_batch
from journal.verify import verify_journal
from tests.conftest import new_key
from tests.journal.eventgen import conversation

SEGMENT_BYTES = 2500


def _frames(path: Path) -> list[Frame]:
    with open(path, "rb") as f:
        return [fr for fr in scan_frames(f) if isinstance(fr, Frame)]


def _fill(repo: Repository, first: int, count: int) -> None:
    for start in range(first, first + count, 10):
        repo.log.append([conversation(i) for i in range(start, min(start + 10, first + count))])


@pytest.fixture
def encrypted(tmp_path: Path) -> Iterator[tuple[Path, MasterSecret]]:
    secret = new_key()
    Repository.init(tmp_path / "repo", secret)
    yield tmp_path / "repo", secret


def _writer(path: Path, secret: MasterSecret | None) -> Repository:
    return Repository.open(path, secret, writable=True, segment_max_bytes=SEGMENT_BYTES)


def _ring_keys_fail(payload: bytes, header_size: int, ring: KeyRing) -> bool:
    """Whether no data key of the ring opens this sealed body (the attacker's best try)."""
    aad, body = payload[:header_size], payload[header_size:]
    for key in ring.keys.values():
        try:
            AESGCM(key).decrypt(body[:12], body[12:], aad)
        except InvalidTag:
            continue
        return False
    return True


def test_every_segment_has_its_own_key(encrypted: tuple[Path, MasterSecret]) -> None:
    path, secret = encrypted
    with _writer(path, secret) as repo:
        _fill(repo, 0, 60)
        names = [Path(rel).stem for rel, _ in repo.log.segment_files()]
    keys_dir = path / "keys" / "segments"
    assert sorted(p.stem for p in keys_dir.iterdir()) == names, "one key file per segment"
    for key_file in keys_dir.iterdir():
        doc = json.loads(key_file.read_text())
        assert set(doc) == {"version", "wrapped_by", "key"} and doc["wrapped_by"] == 1
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    used = {
        BatchHeader.unpack(f.payload).key_id
        for name in names
        for f in _frames(path / "journal" / f"{name}.seg")[1:]
    }
    assert used == {KEY_ID_FILE}, "frames name their segment's key, never a ring key"


def test_a_copy_of_a_dropped_segment_cannot_be_decrypted(
    encrypted: tuple[Path, MasterSecret], tmp_path: Path
) -> None:
    path, secret = encrypted
    with _writer(path, secret) as repo:
        _fill(repo, 0, 60)
        rel, info = repo.log.segment_files()[0]
        assert info is not None
        copy = tmp_path / "backup-copy.seg"
        shutil.copy(path / rel, copy)
        frame = _frames(copy)[1]
        codec = repo.log.codec_for(rel)
        assert decode_batch(frame.payload, codec, rel, frame.offset), "readable before"
        assert repo.ring is not None
        assert _ring_keys_fail(frame.payload, 36, repo.ring), "ring keys never opened it"

        repo.log.drop_before(info.last_seq + 1)

        assert not (path / "keys" / "segments" / f"{Path(rel).stem}.key").exists()
        with pytest.raises(AuthError, match=r"is gone.*crypto-shredded"):
            decode_batch(frame.payload, repo.log.codec_for(rel), rel, frame.offset)
        with pytest.raises(AuthError):
            decode_batch(frame.payload, repo.codec, rel, frame.offset)
        assert [e.seq for e in repo.log.read()] == list(range(info.last_seq + 1, 61))
    with Repository.open(path, secret) as repo:  # the master key does not bring it back
        assert repo.ring is not None
        for frame in _frames(copy)[1:]:
            assert _ring_keys_fail(frame.payload, 36, repo.ring)
        assert verify_journal(repo.log).ok


def test_a_copy_of_a_deleted_pack_cannot_be_decrypted(
    encrypted: tuple[Path, MasterSecret], tmp_path: Path
) -> None:
    path, secret = encrypted
    with _writer(path, secret) as repo:
        keep = repo.blobs.put_bytes(os.urandom(30_000))
        doomed = repo.blobs.put_bytes(b"customer list " * 2000)
        repo.blobs.seal()
        (pack,) = (path / "blobs" / "packs").iterdir()
        copy = tmp_path / "backup-copy.pack"
        shutil.copy(pack, copy)
        report = repo.blobs.collect([keep.id], protect_newer_than_s=0, rewrite_threshold=0.0)
        assert report.packs_rewritten == (pack.stem,)
        assert not pack.exists() and not (path / "keys" / PACKS / f"{pack.stem}.key").exists()
        assert repo.blobs.read(keep.id) and not repo.blobs.exists(doomed.id)
        assert repo.ring is not None
        objects = _frames(copy)[1:]
        assert objects and all(
            _ring_keys_fail(f.payload, OBJECT_HEADER.size, repo.ring) for f in objects
        )
        cipher = FileKeys(path, repo.id, AesGcm(repo.ring)).cipher(PACKS, pack.stem)
        header = objects[0].payload[: OBJECT_HEADER.size]
        with pytest.raises(AuthError, match="crypto-shredded"):
            cipher.decrypt(KEY_ID_FILE, objects[0].payload[OBJECT_HEADER.size :], header)


def test_shredding_overwrites_the_key_before_unlinking(
    encrypted: tuple[Path, MasterSecret], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, secret = encrypted
    seen: dict[str, bytes] = {}
    real_remove = fsutil.remove

    def spy(p: Path) -> bool:
        if p.suffix == ".key":
            seen[p.name] = p.read_bytes()
        return real_remove(p)

    monkeypatch.setattr(fsutil, "remove", spy)
    with _writer(path, secret) as repo:
        _fill(repo, 0, 60)
        rel, info = repo.log.segment_files()[0]
        assert info is not None
        key_file = path / "keys" / "segments" / f"{Path(rel).stem}.key"
        original = key_file.read_bytes()
        repo.log.drop_before(info.last_seq + 1)
    assert seen[key_file.name] != original and len(seen[key_file.name]) == len(original)
    assert b"wrapped_by" not in seen[key_file.name], "the overwrite is random bytes"


def test_a_key_file_is_bound_to_its_segment(encrypted: tuple[Path, MasterSecret]) -> None:
    path, secret = encrypted
    with _writer(path, secret) as repo:
        _fill(repo, 0, 60)
        (a, _), (b, _) = repo.log.segment_files()[:2]
    keys = path / "keys" / "segments"
    shutil.copy(keys / f"{Path(a).stem}.key", keys / f"{Path(b).stem}.key")
    with Repository.open(path, secret) as repo:
        report = verify_journal(repo.log)
        assert report.problems and {p.path for p in report.problems} == {b}
        assert all("does not open" in p.reason for p in report.problems), report.problems


def test_a_missing_key_file_is_reported(encrypted: tuple[Path, MasterSecret]) -> None:
    path, secret = encrypted
    with _writer(path, secret) as repo:
        _fill(repo, 0, 60)
        rel = repo.log.segment_files()[1][0]
    (path / "keys" / "segments" / f"{Path(rel).stem}.key").unlink()
    with Repository.open(path, secret) as repo:
        problems = verify_journal(repo.log).problems
        assert problems and {p.path for p in problems} == {rel}
        assert "is gone" in problems[0].reason


def test_keys_are_created_with_the_ring_alone(tmp_path: Path) -> None:
    keys = FileKeys(tmp_path, "ab" * 16, AesGcm(KeyRing.create()))
    key = keys.create(PACKS, "cd" * 16)
    assert keys.load(PACKS, "cd" * 16) == key
    other = FileKeys(tmp_path, "ef" * 16, keys.ring_cipher)  # another repository's id
    with pytest.raises(AuthError, match="does not open"):
        other.load(PACKS, "cd" * 16)
    assert keys.shred(PACKS, "cd" * 16) and not keys.shred(PACKS, "cd" * 16)


def test_rotation_wraps_new_keys_and_keeps_old_ones(encrypted: tuple[Path, MasterSecret]) -> None:
    path, secret = encrypted
    with _writer(path, secret) as repo:
        _fill(repo, 0, 40)
        before = repo.blobs.put_bytes(b"before rotation " * 500)
        repo.blobs.seal()
        assert repo.rotate_key(secret) == 2
        _fill(repo, 40, 40)
        after = repo.blobs.put_bytes(b"after rotation " * 500)
        repo.blobs.seal()
    wrapped = {
        kind: {json.loads(p.read_text())["wrapped_by"] for p in (path / "keys" / kind).iterdir()}
        for kind in (SEGMENTS, PACKS)
    }
    assert wrapped == {SEGMENTS: {1, 2}, PACKS: {1, 2}}, wrapped
    with _writer(path, secret) as repo:
        assert [e.seq for e in repo.log.read()] == list(range(1, 81))
        assert repo.blobs.read(before.id) == b"before rotation " * 500
        assert repo.blobs.read(after.id) == b"after rotation " * 500
        repo.blobs.collect([before.id], protect_newer_than_s=0, rewrite_threshold=0.0)
        assert repo.blobs.read(before.id) == b"before rotation " * 500
        assert verify_journal(repo.log).ok and repo.blobs.verify() == []


def test_data_from_before_file_keys_stays_readable(
    encrypted: tuple[Path, MasterSecret], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, secret = encrypted

    def ring_key(self: FileKeys, kind: str, name: str) -> AesGcm:
        return self.ring_cipher  # what older versions did: encrypt under the ring's key

    monkeypatch.setattr(FileKeys, "writer_cipher", ring_key)
    with _writer(path, secret) as repo:
        _fill(repo, 0, 50)
        old = repo.blobs.put_bytes(b"legacy content " * 300)
        repo.blobs.put_bytes(os.urandom(3000))  # garbage: the pack will be rewritten
        repo.blobs.seal()
    monkeypatch.undo()
    assert not (path / "keys").exists(), "the old layout: no key files"
    with _writer(path, secret) as repo:
        _fill(repo, 50, 30)
        new = repo.blobs.put_bytes(b"new content " * 300)
        assert [e.seq for e in repo.log.read()] == list(range(1, 81))
        assert repo.blobs.read(old.id) == b"legacy content " * 300
        ids = {
            BatchHeader.unpack(f.payload).key_id
            for rel, _ in repo.log.segment_files()
            for f in _frames(path / rel)[1:]
        }
        assert ids == {1, KEY_ID_FILE}, "old frames name ring key 1, new ones their file key"
        assert verify_journal(repo.log).ok and repo.blobs.verify() == []
        first = repo.log.manifest.segments[1].first_seq
        assert repo.log.drop_before(first).first_seq == first
        report = repo.blobs.collect([old.id, new.id], protect_newer_than_s=0, rewrite_threshold=0)
        assert report.objects_removed == 2 and len(report.packs_rewritten) == 1
        assert repo.blobs.read(old.id) == b"legacy content " * 300, "re-encrypted when moved"
        assert [e.seq for e in repo.log.read()] == list(range(first, 81))
    (pack,) = (path / "blobs" / "open").iterdir()
    headers = [OBJECT_HEADER.unpack_from(f.payload) for f in _frames(pack)[1:]]
    assert {h[3] for h in headers} == {KEY_ID_FILE}, "moved objects are under the pack's key"


def test_a_secrets_repository_keys_only_secret_objects(tmp_path: Path) -> None:
    secret = new_key()
    Repository.init(tmp_path / "r", secret, encrypt_all=False)
    with _writer(tmp_path / "r", secret) as repo:
        _fill(repo, 0, 40)
        repo.blobs.put_bytes(b"ordinary " * 100)
        repo.blobs.seal()
        hidden = repo.blobs.put_bytes(b"API_KEY=123\n", secret=True)
        repo.blobs.seal()
        assert repo.log.segment_files(), "the journal is in clear: no segment keys"
    assert not (tmp_path / "r" / "keys" / "segments").exists()
    packs = {p.stem for p in (tmp_path / "r" / "blobs" / "packs").iterdir()}
    keyed = {p.stem for p in (tmp_path / "r" / "keys" / "packs").iterdir()}
    assert len(packs) == 2 and len(keyed) == 1 and keyed < packs
    with _writer(tmp_path / "r", secret) as repo:
        assert repo.blobs.read(hidden.id) == b"API_KEY=123\n"
        repo.blobs.collect([], protect_newer_than_s=0)
    assert not any((tmp_path / "r" / "keys" / "packs").iterdir()), "its key went with it"
