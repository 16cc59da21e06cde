"""BlobStore and Chunker through their public API: round trips, dedup, bounded memory,
crash recovery, sealing, detection of every single-byte corruption of a sealed pack, and
secret contents: encrypted even in a store (and repository) that encrypts nothing else."""

from __future__ import annotations

import hashlib
import io
import os
import random
import re
import stat
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import pytest
from fastcdc import fastcdc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal.blobs import BlobRef, BlobStore, Chunker, packset
from journal.codec import AesGcm, Codec, Zstd
from journal.errors import AuthError, ConfigError, CorruptionError, NotFound, RepositoryError
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.filekeys import FileKeys
from journal.framing import ENVELOPE_SIZE, Frame, encode_frame, scan_frames
from journal.keys import KeyRing, MasterSecret
from journal.repository import Repository

SMALL = {"min_chunk": 256, "avg_chunk": 1024, "max_chunk": 4096, "window": 16 * 1024}


@dataclass
class Keys:
    """A codec and id key for one repository, so a test can reopen with the same keys.

    ``secret_codec`` and ``secret_id_key`` seal secret contents where ``codec`` does not
    encrypt ("secrets" mode); ``locked`` opens such a store without them.
    """

    codec: Codec
    id_key: bytes | None
    secret_codec: Codec | None = None
    secret_id_key: bytes | None = None
    locked: bool = False

    def without_key(self) -> Keys:
        """The same store opened without its key ring, as a "secrets" repository can be."""
        return Keys(self.codec, self.id_key, locked=True)


def make_keys(mode: str) -> Keys:
    if mode == "encrypted":
        ring = KeyRing.create()
        return Keys(Codec(Zstd(3), AesGcm(ring)), ring.id_key)
    if mode == "raw":
        return Keys(Codec(None, None), None)
    if mode in ("secrets", "raw-secrets"):
        ring = KeyRing.create()
        zstd = Zstd(3) if mode == "secrets" else None
        return Keys(Codec(zstd, None), None, Codec(zstd, AesGcm(ring)), ring.id_key)
    return Keys(Codec(Zstd(3), None), None)


def file_keys(root: Path, keys: Keys) -> FileKeys | None:
    """Per-pack keys under ``root`` for a store whose codecs encrypt."""
    cipher = keys.codec.cipher or (keys.secret_codec.cipher if keys.secret_codec else None)
    assert cipher is None or isinstance(cipher, AesGcm)
    return FileKeys(root, "0123456789abcdef0123456789abcdef", cipher) if cipher else None


def open_store(root: Path, keys: Keys, **kw: Any) -> BlobStore:
    return BlobStore(
        root,
        keys.codec,
        keys.id_key,
        secret_codec=keys.secret_codec,
        secret_id_key=keys.secret_id_key,
        secrets_locked=keys.locked,
        file_keys=file_keys(root, keys),
        **{**SMALL, **kw},
    )


def rand(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


MODES = pytest.mark.parametrize("mode", ["plain", "encrypted"], ids=["plain", "encrypted"])


class ShortReader:
    """Returns at most ``step`` bytes per read, like a pipe or socket."""

    def __init__(self, data: bytes, steps: list[int]) -> None:
        self.f, self.steps, self.i = io.BytesIO(data), steps, 0

    def read(self, n: int = -1) -> bytes:
        self.i += 1
        return self.f.read(min(n, self.steps[self.i % len(self.steps)]))


class LazyReader:
    """``size`` pseudo-random bytes made on demand: the whole never exists in memory."""

    def __init__(self, size: int, seed: int) -> None:
        self.left, self.rng = size, random.Random(seed)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self.rng.randbytes(n)


# --- chunking ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 120_000),
    seed=st.integers(0, 2**32),
    window=st.integers(4096, 20_000),
    steps=st.lists(st.integers(1, 9000), min_size=1, max_size=5),
)
def test_windowed_chunking_cuts_like_whole_data(
    size: int, seed: int, window: int, steps: list[int]
) -> None:
    data = rand(size, seed)
    chunker = Chunker(256, 1024, 4096, window)
    got = [len(c) for c in chunker.chunks(ShortReader(data, steps))]
    want = [c.length for c in fastcdc(data, 256, 1024, 4096)] if data else []
    assert got == want, f"window {window} moved cuts: {got[:8]} vs {want[:8]}"


@pytest.mark.parametrize(
    "kw",
    [{"min_size": 10}, {"avg_size": 100_000, "max_size": 50_000}, {"window": 1024}],
    ids=["min-too-small", "avg-above-max", "window-below-max"],
)
def test_chunker_rejects_bad_sizes(kw: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        Chunker(**kw)


# --- round trips and dedup ------------------------------------------------------------------


@pytest.fixture(params=["plain", "encrypted", "raw", "secrets"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    with open_store(tmp_path, make_keys(request.param)) as s:
        yield s


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=st.integers(0, 200_000), seed=st.integers(0, 2**32))
def test_round_trip(store: BlobStore, size: int, seed: int) -> None:
    data = rand(size, seed)
    ref = store.put_bytes(data)
    store.flush()
    assert ref.size == size
    assert store.read(ref.id) == data, f"{size} bytes did not round-trip"
    assert store.stat(ref.id) == ref, "stat disagrees with the ref returned by put"
    assert all(len(c) <= 4096 for c in store.open(ref.id)), "a streamed chunk exceeds max_chunk"


def test_empty_blob(store: BlobStore) -> None:
    ref = store.put_bytes(b"")
    assert store.read(ref.id) == b"" and ref.size == 0


def test_same_content_is_stored_once(store: BlobStore) -> None:
    data = rand(50_000, 1)
    first = store.put_bytes(data)
    before = store.stats()
    second = store.put_bytes(data)
    assert first == second, "same content must give the same ref"
    assert store.stats() == before, "a second put of the same content stored something"


def test_shared_chunks_are_stored_once(store: BlobStore) -> None:
    common = rand(40_000, 2)
    store.put_bytes(common + rand(5000, 3))
    chunks = store.stats().chunks
    store.put_bytes(common + rand(5000, 4))
    new = store.stats().chunks - chunks
    assert new <= 8, f"{new} new chunks for a 5 KB different tail"


@pytest.mark.parametrize(
    "edit",
    [lambda b, m: b[:m] + b"XXXXX" + b[m + 5 :], lambda b, m: b[:m] + b"inserted" + b[m:]],
    ids=["overwrite", "insert"],
)
def test_edit_in_the_middle_stores_few_chunks(
    tmp_path: Path, edit: Callable[[bytes, int], bytes]
) -> None:
    data = rand(4 * 1024 * 1024, 5)
    with BlobStore(tmp_path, Codec(None, None), None) as s:
        s.put_bytes(data)
        before = s.stats().chunks
        edited = edit(data, len(data) // 2)
        ref = s.put_bytes(edited)
        new = s.stats().chunks - before
        assert 1 <= new <= 3, f"editing one place stored {new} new chunks"
        assert s.read(ref.id) == edited


def test_ids_are_keyed_when_encrypted(tmp_path: Path) -> None:
    data = rand(10_000, 6)
    ids = []
    for i, mode in enumerate(["encrypted", "encrypted", "plain", "plain"]):
        with open_store(tmp_path / str(i), make_keys(mode)) as s:
            ids.append(s.put_bytes(data).id)
    assert ids[0] != ids[1], "two repositories with different id keys gave the same id"
    assert ids[2] == ids[3], "unkeyed ids must be plain content hashes"


def test_put_file_and_concurrent_puts(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(rand(30_000, 7))
    with open_store(tmp_path / "repo", make_keys("encrypted")) as s:
        assert s.read(s.put_file(src).id) == src.read_bytes()
        blobs = [rand(20_000, 100 + i % 4) for i in range(16)]
        refs: list[str] = [""] * len(blobs)

        def put(i: int) -> None:
            refs[i] = s.put_bytes(blobs[i]).id

        threads = [threading.Thread(target=put, args=(i,)) for i in range(len(blobs))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [s.read(r) for r in refs] == blobs
        assert s.verify() == [], "concurrent puts left a damaged pack"


def test_missing_and_malformed_ids(store: BlobStore) -> None:
    ref = store.put_bytes(b"hello" * 1000)
    chunk_like = "00" * 32
    assert store.exists(ref.id) and not store.exists(chunk_like) and not store.exists("zz")
    with pytest.raises(NotFound, match=chunk_like):
        store.read(chunk_like)
    with pytest.raises(ConfigError, match="not a blob id"):
        store.open("abc")


def test_memory_stays_bounded_for_a_64_mib_stream(tmp_path: Path) -> None:
    size = 64 * 1024 * 1024
    with BlobStore(tmp_path, Codec(Zstd(1), None), None) as s:
        tracemalloc.start()
        try:
            ref = s.put_stream(LazyReader(size, 8))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert ref.size == size
        assert peak < 40 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while storing 64 MiB"
        assert s.stats().sealed_packs >= 1, "a 64 MiB blob should fill a 32 MiB pack"


# --- packs on disk: sealing, reopening, recovery ----------------------------------------


@MODES
def test_small_packs_are_sealed_and_reloaded(tmp_path: Path, mode: str) -> None:
    keys = make_keys(mode)
    blobs = [rand(30_000, 10 + i) for i in range(8)]
    with open_store(tmp_path, keys, pack_max_bytes=64 * 1024) as s:
        refs = [s.put_bytes(b).id for b in blobs]
        stats = s.stats()
    assert stats.sealed_packs >= 2, f"expected several sealed packs, got {stats}"
    packs = sorted((tmp_path / "blobs" / "packs").iterdir())
    assert len(packs) == stats.sealed_packs
    for p in packs:
        assert stat.S_IMODE(p.stat().st_mode) == 0o444, f"{p.name} is writable after sealing"
        assert (tmp_path / "blobs" / "index" / f"{p.stem}.idx").exists(), f"{p.name} has no idx"
    with open_store(tmp_path, keys, writable=False) as s:
        assert s.stats() == stats, "reopening lost or gained objects"
        assert [s.read(r) for r in refs] == blobs
        assert s.verify() == [] and s.recovery_notes == []
        with pytest.raises(RepositoryError, match="read-only"):
            s.put_bytes(b"x")


def open_pack(root: Path) -> Path:
    (path,) = (root / "blobs" / "open").iterdir()
    return path


@MODES
def test_torn_tail_of_the_open_pack_is_cut_off(tmp_path: Path, mode: str) -> None:
    keys = make_keys(mode)
    with open_store(tmp_path, keys) as s:
        kept = s.put_bytes(rand(20_000, 20))
        s.flush()
        lost = s.put_bytes(rand(20_000, 21))
    path = open_pack(tmp_path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 10)  # the crash tore the last frame, lost's blob list
    with open_store(tmp_path, keys) as s:
        assert len(s.recovery_notes) == 1 and "torn tail" in s.recovery_notes[0]
        assert path.name in s.recovery_notes[0], "the note must name the pack"
        assert s.read(kept.id) == rand(20_000, 20), "a flushed blob was lost"
        assert not s.exists(lost.id)
        again = s.put_bytes(rand(20_000, 21))
        assert s.read(again.id) == rand(20_000, 21)
    with open_store(tmp_path, keys) as s:
        assert s.recovery_notes == [] and s.verify() == []


def test_read_only_open_leaves_a_torn_pack_alone(tmp_path: Path) -> None:
    keys = make_keys("plain")
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(rand(20_000, 22))
    path = open_pack(tmp_path)
    with open(path, "ab") as f:
        f.write(b"HSF1 torn")
    size = path.stat().st_size
    with open_store(tmp_path, keys, writable=False) as s:
        assert s.read(ref.id) == rand(20_000, 22) and s.recovery_notes
    assert path.stat().st_size == size, "a read-only open modified the pack"


def test_damage_inside_the_open_pack_refuses_to_open(tmp_path: Path) -> None:
    keys = make_keys("plain")
    with open_store(tmp_path, keys) as s:
        s.put_bytes(rand(20_000, 23))
    path = open_pack(tmp_path)
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match=path.name) as info:
        open_store(tmp_path, keys)
    assert info.value.offset is not None and info.value.offset <= 100


def test_pack_with_only_a_torn_header_is_discarded(tmp_path: Path) -> None:
    keys = make_keys("plain")
    (tmp_path / "blobs" / "open").mkdir(parents=True)
    (tmp_path / "blobs" / "open" / ("ab" * 16 + ".pack")).write_bytes(b"HSF1\x18")
    with open_store(tmp_path, keys) as s:
        assert s.stats().packs == 0 and s.recovery_notes
    assert list((tmp_path / "blobs" / "open").iterdir()) == []


def test_crash_between_index_and_move_is_finished(tmp_path: Path) -> None:
    keys = make_keys("encrypted")
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(rand(30_000, 24))
        s.seal()
    (sealed,) = (tmp_path / "blobs" / "packs").iterdir()
    os.replace(sealed, tmp_path / "blobs" / "open" / sealed.name)  # undo step 3
    with open_store(tmp_path, keys) as s:
        assert any("finished sealing" in n for n in s.recovery_notes), s.recovery_notes
        assert sealed.exists() and s.read(ref.id) == rand(30_000, 24)
        assert s.stats().sealed_packs == 1 and s.verify() == []


def test_damaged_or_missing_index_falls_back_to_scanning(tmp_path: Path) -> None:
    keys = make_keys("plain")
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(rand(30_000, 25))
        s.seal()
    (idx,) = (tmp_path / "blobs" / "index").iterdir()
    idx.write_bytes(idx.read_bytes()[:-3])
    with open_store(tmp_path, keys) as s:
        assert s.read(ref.id) == rand(30_000, 25) and s.recovery_notes
        problems = s.verify()
    assert [p.path for p in problems] == [f"blobs/index/{idx.name}"], problems
    idx.unlink()
    with open_store(tmp_path, keys) as s:
        assert s.read(ref.id) == rand(30_000, 25)
        assert [p.reason for p in s.verify()] == ["sealed pack has no index file"]


def test_wrong_key_is_an_auth_error(tmp_path: Path) -> None:
    with open_store(tmp_path, make_keys("encrypted")) as s:
        ref = s.put_bytes(rand(10_000, 26))
    other = make_keys("encrypted")
    with open_store(tmp_path, other) as s, pytest.raises(AuthError, match="blobs/open/"):
        s.read(ref.id)
    with open_store(tmp_path, make_keys("plain")) as s, pytest.raises(AuthError, match="key"):
        s.read(ref.id)


# --- single-byte corruption of a sealed pack -------------------------------------------


def frame_starts(path: Path) -> list[int]:
    with open(path, "rb") as f:
        return [item.offset for item in scan_frames(f) if isinstance(item, Frame)]


PLACES = {
    "pack-header-magic": lambda starts, size: 0,
    "pack-header-length": lambda starts, size: 5,
    "pack-header-payload": lambda starts, size: 20,
    "chunk-envelope": lambda starts, size: starts[1] + 2,
    "chunk-header-kind": lambda starts, size: starts[1] + 16,
    "chunk-header-flags": lambda starts, size: starts[1] + 17,
    "chunk-header-reserved": lambda starts, size: starts[1] + 18,
    "chunk-header-key-id": lambda starts, size: starts[1] + 20,
    "chunk-header-length": lambda starts, size: starts[1] + 24,
    "chunk-header-id": lambda starts, size: starts[1] + 16 + 20,
    "chunk-body": lambda starts, size: (starts[2] + starts[3]) // 2,
    "list-body": lambda starts, size: (starts[-1] + size) // 2,
    "last-byte": lambda starts, size: size - 1,
}


@MODES
@pytest.mark.parametrize("place", list(PLACES), ids=list(PLACES))
def test_any_flipped_byte_in_a_sealed_pack_is_found(tmp_path: Path, mode: str, place: str) -> None:
    keys = make_keys(mode)
    data = rand(12_000, 27)
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(data)
        s.seal()
    (pack,) = (tmp_path / "blobs" / "packs").iterdir()
    starts, raw = frame_starts(pack), bytearray(pack.read_bytes())
    offset = PLACES[place](starts, len(raw))
    raw[offset] ^= 0x01
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    frame = max(s for s in starts if s <= offset)
    with open_store(tmp_path, keys) as s:
        problems = s.verify()
        rel = f"blobs/packs/{pack.name}"
        assert any(p.path == rel and p.offset == frame for p in problems), (
            f"flipping byte {offset} ({place}) gave {[str(p) for p in problems]}"
        )
        with pytest.raises((CorruptionError, AuthError), match=pack.name):
            s.read(ref.id)


@pytest.mark.parametrize("bit", [0x01, 0x02, 0x80], ids=["zstd", "aes-gcm", "unknown"])
def test_a_flipped_flag_reads_as_a_damaged_frame_not_as_a_missing_key(
    tmp_path: Path, bit: int
) -> None:
    """Reads skip the payload checksum that decoding makes redundant, but not its verdict."""
    with open_store(tmp_path, make_keys("secrets")) as s:
        ref = s.put_bytes(rand(12_000, 29))
        s.seal()
    (pack,) = (tmp_path / "blobs" / "packs").iterdir()
    starts, raw = frame_starts(pack), bytearray(pack.read_bytes())
    raw[starts[1] + ENVELOPE_SIZE + 1] ^= bit
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    damaged = f"payload checksum mismatch .*{pack.name}"
    with (
        open_store(tmp_path, make_keys("secrets").without_key()) as s,
        pytest.raises(CorruptionError, match=damaged),
    ):
        s.read(ref.id)


def test_adjacent_chunks_are_read_together_within_the_run_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []
    real = packset._Reader.pread

    def counted(self: Any, offset: int, length: int) -> bytes:
        reads.append(length)
        return real(self, offset, length)

    monkeypatch.setattr(packset._Reader, "pread", counted)
    monkeypatch.setattr(packset, "RUN_BYTES", 20_000)
    data = rand(100_000, 30)
    with open_store(tmp_path, make_keys("plain")) as s:
        ref = s.put_bytes(data)
        s.seal()
        chunks = len(s._read_list(ref.id)[2])
        reads.clear()
        assert s.read(ref.id) == data
    assert reads[0] < 64 * chunks, "the list first, on its own"
    runs = reads[1:]
    assert 1 < len(runs) < chunks, f"{chunks} chunks in {len(runs)} reads"
    assert max(runs) <= 20_000 and sum(runs) > len(data) // 2


@pytest.mark.parametrize(
    ("mode", "error", "reason"),
    [
        ("encrypted", AuthError, "authentication tag"),
        ("plain", CorruptionError, "hash to its id|zstd"),
        ("raw", CorruptionError, "hash to its id"),
    ],
    ids=["encrypted", "plain", "raw"],
)
def test_tampering_that_fixes_the_checksums_is_still_found(
    tmp_path: Path, mode: str, error: type[Exception], reason: str
) -> None:
    keys = make_keys(mode)
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(rand(12_000, 28))
        s.seal()
    (pack,) = (tmp_path / "blobs" / "packs").iterdir()
    starts, raw = frame_starts(pack), bytearray(pack.read_bytes())
    start, end = starts[1], starts[2]
    payload = bytearray(raw[start + ENVELOPE_SIZE : end])
    payload[-5] ^= 0x01
    raw[start:end] = encode_frame(bytes(payload))
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    with open_store(tmp_path, keys) as s:
        problems = [p for p in s.verify() if p.offset == start]
        assert problems and re.search(reason, problems[0].reason), [str(p) for p in problems]
        with pytest.raises(error, match=pack.name):
            s.read(ref.id)


# --- secret contents ------------------------------------------------------------------------

FAKE_ENV = b"OPENAI_API_KEY=sk-live-7f3a9c2e1b8d4f6a0e5c3b9d\nDB_PASSWORD=hunter2-Zq8!\n"
SECRET_VALUES = (b"sk-live-7f3a9c2e1b8d4f6a0e5c3b9d", b"hunter2-Zq8!")


def files_holding(root: Path, needles: tuple[bytes, ...]) -> list[str]:
    """Every file under ``root`` whose raw bytes contain one of ``needles``."""
    return [
        f"{p.relative_to(root)} holds {n!r}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
        for n in needles
        if n in p.read_bytes()
    ]


@pytest.fixture(params=["secrets", "raw-secrets", "encrypted"])
def secret_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    with open_store(tmp_path, make_keys(request.param)) as s:
        yield s


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(size=st.integers(0, 60_000), seed=st.integers(0, 2**32))
def test_secret_round_trip(secret_store: BlobStore, size: int, seed: int) -> None:
    data = rand(size, seed)
    ref = secret_store.put_bytes(data, secret=True)
    assert ref.size == size and secret_store.read(ref.id) == data, "a secret did not round-trip"
    assert secret_store.stat(ref.id).sha256 == hashlib.sha256(data).hexdigest(), (
        "with the key, stat gives the real SHA-256 kept inside the encrypted blob list"
    )


@pytest.mark.parametrize("mode", ["secrets", "raw-secrets"])
def test_secret_is_encrypted_in_an_unencrypted_store(tmp_path: Path, mode: str) -> None:
    keys = make_keys(mode)
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(FAKE_ENV, secret=True)
        s.seal()  # the index file must not leak anything either
        assert s.read(ref.id) == FAKE_ENV
    leaks = files_holding(tmp_path, (*SECRET_VALUES, FAKE_ENV[:20]))
    assert leaks == [], f"secret bytes stored in clear: {leaks}"
    plain_id = blake3.blake3(FAKE_ENV).digest()
    assert files_holding(tmp_path, (plain_id,)) == [], "a chunk id is the plain BLAKE3"
    assert ref.id != plain_id.hex(), "the blob id must not be a plain hash of the content"
    assert ref.sha256 == "", "the content hash of a secret must not reach a clear journal"
    assert ref.size == len(FAKE_ENV)


def test_ordinary_puts_beside_secrets_stay_unencrypted(tmp_path: Path) -> None:
    keys = make_keys("raw-secrets")
    ordinary = b"plain config, stored verbatim " * 20
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(ordinary)
        hidden = s.put_bytes(ordinary, secret=True)
        s.seal()
        assert ref.sha256 == hashlib.sha256(ordinary).hexdigest()
        assert hidden.id != ref.id, "secret and ordinary copies must not share ids"
        assert s.read(ref.id) == s.read(hidden.id) == ordinary
        assert s.stats().chunks == 2, "secret and ordinary copies share no chunk"
    (pack,) = (tmp_path / "blobs" / "packs").iterdir()
    assert ordinary in pack.read_bytes(), "an ordinary content in a raw store is not encrypted"
    with open_store(tmp_path, make_keys("raw")) as s:
        assert s.read(ref.id) == ordinary, "ordinary ids are plain hashes, readable keyless"


def test_secret_in_an_encrypted_store_is_an_ordinary_put(tmp_path: Path) -> None:
    with open_store(tmp_path, make_keys("encrypted")) as s:
        ref = s.put_bytes(FAKE_ENV)
        before = s.stats()
        assert s.put_bytes(FAKE_ENV, secret=True) == ref, "same ref, real SHA-256 included"
        assert s.stats() == before, "and the same objects"
    assert files_holding(tmp_path, SECRET_VALUES) == []


def test_secrets_without_the_key(tmp_path: Path) -> None:
    keys = make_keys("secrets")
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(FAKE_ENV, secret=True)
        other = s.put_bytes(b"ordinary" * 100)
    with open_store(tmp_path, keys.without_key()) as s:
        assert s.exists(ref.id), "the store still knows the secret blob is there"
        assert s.read(other.id) == b"ordinary" * 100, "ordinary contents need no key"
        with pytest.raises(AuthError, match=r"secret file contents are encrypted.*--key-file"):
            s.read(ref.id)
        with pytest.raises(AuthError, match=r"secret file contents are encrypted") as info:
            s.put_bytes(b"NEW_TOKEN=abc", secret=True)
        assert "abc" not in str(info.value)
        assert s.put_bytes(b"still fine").size == 10, "ordinary puts work without the key"


def test_legacy_store_refuses_secrets(tmp_path: Path) -> None:
    with open_store(tmp_path, make_keys("plain")) as s:
        with pytest.raises(RepositoryError, match="create a new repository"):
            s.put_bytes(FAKE_ENV, secret=True)
        assert s.stats().chunks == 0, "nothing of the refused secret was stored"
    assert files_holding(tmp_path, SECRET_VALUES) == []


def test_verify_secrets_with_and_without_the_key(tmp_path: Path) -> None:
    keys = make_keys("secrets")
    with open_store(tmp_path, keys) as s:
        s.put_bytes(FAKE_ENV, secret=True)
        s.put_bytes(rand(20_000, 30))
        s.seal()
        s.put_bytes(rand(9_000, 31), secret=True)
    with open_store(tmp_path, keys) as s:
        assert s.verify() == [], "with the key every secret object is checked and passes"
    with open_store(tmp_path, keys.without_key()) as s:
        problems = s.verify()
    packs = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.pack"))
    assert sorted(p.path for p in problems) == packs, [str(p) for p in problems]
    for p in problems:
        assert p.offset is None and re.search(r"\d+ secret objects were not checked", p.reason)
        assert "--key-file" in p.reason, "the problem says how to give the key"


def test_tampered_secret_object_is_an_auth_error(tmp_path: Path) -> None:
    keys = make_keys("secrets")
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(FAKE_ENV, secret=True)
        s.seal()
    (pack,) = (tmp_path / "blobs" / "packs").iterdir()
    starts, raw = frame_starts(pack), bytearray(pack.read_bytes())
    start, end = starts[1], starts[2]
    payload = bytearray(raw[start + ENVELOPE_SIZE : end])
    payload[-5] ^= 0x01
    raw[start:end] = encode_frame(bytes(payload))
    pack.chmod(0o644)
    pack.write_bytes(bytes(raw))
    with open_store(tmp_path, keys) as s:
        assert any(p.offset == start and "tag" in p.reason for p in s.verify())
        with pytest.raises(AuthError, match=pack.name):
            s.read(ref.id)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"secret_codec": Codec(Zstd(3), None), "secret_id_key": bytes(32)}, "must encrypt"),
        ({"secret_codec": Codec(None, AesGcm(KeyRing.create()))}, "id key"),
    ],
    ids=["codec-without-cipher", "no-id-key"],
)
def test_secret_codec_is_checked(tmp_path: Path, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BlobStore(tmp_path, Codec(Zstd(3), None), None, **kw)


# --- secret contents through a repository ---------------------------------------------------


def env_image(ref: BlobRef) -> FileImage:
    return FileImage(ref.id, ref.size, ref.sha256, 0o600, 1, None)


def test_secrets_repository_keeps_secret_contents_out_of_every_file(tmp_path: Path) -> None:
    key = MasterSecret(key=os.urandom(32), origin="test key")
    root = tmp_path / "repo"
    Repository.init(root, key, encrypt_all=False)
    with Repository.open(root, key, writable=True) as repo:
        assert repo.mode == "secrets" and not repo.encrypted
        ref = repo.blobs.put_bytes(FAKE_ENV, secret=True)
        plain = repo.blobs.put_bytes(b"DEBUG=true\n")
        repo.blobs.flush()
        fs = Source.FILESYSTEM
        repo.log.append(
            [
                ChangeEvent(fs, "app", ".env", Op.CREATE, 1, after=env_image(ref)),
                ChangeEvent(fs, "app", "settings.ini", Op.CREATE, 2, after=env_image(plain)),
            ]
        )
        repo.blobs.seal()
        repo.log.seal()
    leaks = files_holding(root, (*SECRET_VALUES, hashlib.sha256(FAKE_ENV).hexdigest().encode()))
    assert leaks == [], f"secret content or its hash stored in clear: {leaks}"
    with Repository.open(root) as repo:
        events = list(repo.log.read())
        assert [e.key for e in events] == [".env", "settings.ini"], "journal readable keyless"
        images = [e.after for e in events]
        assert isinstance(images[0], FileImage) and images[0].sha256 == "", "no secret's hash"
        assert repo.blobs.read(plain.id) == b"DEBUG=true\n"
        with pytest.raises(AuthError, match="secret file contents are encrypted"):
            repo.blobs.read(ref.id)
    with Repository.open(root, key, writable=True) as repo:
        assert repo.blobs.read(ref.id) == FAKE_ENV
        assert repo.blobs.verify() == []
        assert repo.rotate_key(key) == 2, "a secrets repository's key ring rotates"
        again = repo.blobs.put_bytes(FAKE_ENV + b"X=1\n", secret=True)
    with Repository.open(root, key) as repo:
        assert repo.blobs.read(ref.id) == FAKE_ENV, "old key still opens old secrets"
        assert repo.blobs.read(again.id) == FAKE_ENV + b"X=1\n"


def test_secrets_repository_without_key_refuses_to_store_secrets(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    Repository.init(root, MasterSecret(key=os.urandom(32), origin="k"), encrypt_all=False)
    with Repository.open(root, None, writable=True) as repo:
        with pytest.raises(AuthError, match=r"--key-file, \$HINDSIGHT_KEY or \$HINDSIGHT_PASS"):
            repo.blobs.put_bytes(FAKE_ENV, secret=True)
        repo.log.append([ChangeEvent(Source.SYSTEM, "system", "m", Op.MARKER, 1)])
    assert files_holding(root, SECRET_VALUES) == []


@pytest.mark.parametrize(
    ("secret", "error", "match"),
    [
        (None, RepositoryError, "without a key ring.*new repository"),
        (MasterSecret(key=bytes(32), origin="k"), None, ""),
    ],
    ids=["legacy-none", "encrypted"],
)
def test_secret_puts_in_other_modes(
    tmp_path: Path, secret: MasterSecret | None, error: type[Exception] | None, match: str
) -> None:
    Repository.init(tmp_path / "repo", secret)
    with Repository.open(tmp_path / "repo", secret, writable=True) as repo:
        if error is not None:
            with pytest.raises(error, match=match):
                repo.blobs.put_bytes(FAKE_ENV, secret=True)
        else:
            ref = repo.blobs.put_bytes(FAKE_ENV, secret=True)
            assert ref == repo.blobs.put_bytes(FAKE_ENV), "encrypted: a secret is ordinary"
            assert ref.sha256 == hashlib.sha256(FAKE_ENV).hexdigest()
    assert files_holding(tmp_path / "repo", SECRET_VALUES) == []


def test_missing_key_error_is_not_mistaken_for_damage(tmp_path: Path) -> None:
    keys = make_keys("secrets")
    with open_store(tmp_path, keys) as s:
        ref = s.put_bytes(FAKE_ENV, secret=True)
    with open_store(tmp_path, keys.without_key()) as s, pytest.raises(AuthError) as info:
        s.read(ref.id)
    assert str(info.value) == (
        "secret file contents are encrypted: give the repository key with --key-file, "
        "$HINDSIGHT_KEY or $HINDSIGHT_PASSPHRASE"
    )
