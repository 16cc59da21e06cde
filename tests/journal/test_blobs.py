"""BlobStore and Chunker through their public API: round trips, dedup, bounded memory,
crash recovery, sealing, and detection of every single-byte corruption of a sealed pack."""

from __future__ import annotations

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

import pytest
from fastcdc import fastcdc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal.blobs import BlobStore, Chunker
from journal.codec import AesGcm, Codec, Zstd
from journal.errors import AuthError, ConfigError, CorruptionError, NotFound, RepositoryError
from journal.framing import ENVELOPE_SIZE, Frame, encode_frame, scan_frames
from journal.keys import KeyRing

SMALL = {"min_chunk": 256, "avg_chunk": 1024, "max_chunk": 4096, "window": 16 * 1024}


@dataclass
class Keys:
    """A codec and id key for one repository, so a test can reopen with the same keys."""

    codec: Codec
    id_key: bytes | None


def make_keys(mode: str) -> Keys:
    if mode == "encrypted":
        ring = KeyRing.create()
        return Keys(Codec(Zstd(3), AesGcm(ring)), ring.id_key)
    if mode == "raw":
        return Keys(Codec(None, None), None)
    return Keys(Codec(Zstd(3), None), None)


def open_store(root: Path, keys: Keys, **kw: Any) -> BlobStore:
    return BlobStore(root, keys.codec, keys.id_key, **{**SMALL, **kw})


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


@pytest.fixture(params=["plain", "encrypted", "raw"])
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
