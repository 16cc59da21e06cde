"""Blob store garbage collection (``BlobStore.collect``) through its public API: no live blob
ever loses a byte, shared chunks included (a hypothesis oracle), garbage goes, and a crash at
any step of a collect leaves every live blob readable."""

from __future__ import annotations

import io
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from journal.blobs import BlobStore, Chunker
from journal.blobs import packs as packs_module
from journal.blobs.collect import CollectGate
from journal.blobs.objects import ObjectIds
from journal.blobs.packset import PackSet
from journal.errors import AuthError, ConfigError, CorruptionError, RepositoryError
from tests.journal.test_blobs import SMALL, Keys, make_keys, open_store

PACK_BYTES = 24_000


def _pieces(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.randint(300, 6000)) for _ in range(count)]


def _chunk_ids(data: bytes, id_key: bytes | None) -> set[bytes]:
    """The chunk ids a store with the SMALL chunker gives ``data`` (an oracle)."""
    ids = ObjectIds(id_key)
    return {ids.data_id(c) for c in Chunker(**_chunker_sizes()).chunks(io.BytesIO(data))}


def _chunker_sizes() -> dict[str, int]:
    names = {"min_chunk": "min_size", "avg_chunk": "avg_size", "max_chunk": "max_size"}
    return {names.get(k, k): v for k, v in SMALL.items()}


def _id_key(keys: Keys, secret: bool) -> bytes | None:
    return keys.secret_id_key if secret and keys.secret_codec is not None else keys.id_key


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _pack_ids(root: Path) -> set[str]:
    return {p.stem for d in ("packs", "open") for p in (root / "blobs" / d).glob("*.pack")}


def _key_files(root: Path) -> set[str]:
    return {p.stem for p in (root / "keys" / "packs").glob("*.key")}


# --- the oracle -------------------------------------------------------------------------------

blob_specs = st.lists(
    st.tuples(st.lists(st.integers(0, 7), min_size=1, max_size=5), st.booleans()),
    min_size=1,
    max_size=9,
)


@pytest.mark.parametrize("mode", ["encrypted", "plain", "secrets"])
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 2**32),
    specs=blob_specs,
    live_mask=st.lists(st.booleans(), min_size=9, max_size=9),
    seals=st.lists(st.booleans(), min_size=9, max_size=9),
    threshold=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
)
def test_live_blobs_survive_and_garbage_goes(
    tmp_path: Path,
    mode: str,
    seed: int,
    specs: list[tuple[list[int], bool]],
    live_mask: list[bool],
    seals: list[bool],
    threshold: float,
) -> None:
    root = tmp_path / uuid.uuid4().hex
    keys = make_keys(mode)
    pieces = _pieces(seed, 8)
    contents = {}
    with open_store(root, keys, pack_max_bytes=PACK_BYTES) as store:
        for i, (parts, secret) in enumerate(specs):
            secret = secret and mode == "secrets"
            data = b"".join(pieces[p] for p in parts)
            ref = store.put_bytes(data, secret=secret)
            contents[ref.id] = (data, secret)
            if seals[i]:
                store.seal()
        live = {ref_id for i, ref_id in enumerate(contents) if live_mask[i]}
        report = store.collect(live, protect_newer_than_s=0, rewrite_threshold=threshold)
        _check_live(store, contents, live)
        if threshold == 0.0:
            assert report.garbage_bytes == 0, "with threshold 0 every garbage object goes"
        final = store.collect(live, protect_newer_than_s=0, rewrite_threshold=0.0)
        assert final.garbage_bytes == 0 and final.missing == ()
        _check_live(store, contents, live)
        _check_exact(store, keys, contents, live)
        assert store.verify() == [], "a collected store verifies clean"
    with open_store(root, keys, pack_max_bytes=PACK_BYTES) as store:
        _check_live(store, contents, live)
        _check_exact(store, keys, contents, live)
    if mode == "encrypted":
        assert _key_files(root) == _pack_ids(root), "one key per pack, none for deleted packs"
    else:
        assert _key_files(root) <= _pack_ids(root), "no key outlives its pack"


def _check_live(store: BlobStore, contents: dict[str, tuple[bytes, bool]], live: set[str]) -> None:
    for blob_id in live:
        assert store.read(blob_id) == contents[blob_id][0], f"live blob {blob_id} changed"


def _check_exact(
    store: BlobStore, keys: Keys, contents: dict[str, tuple[bytes, bool]], live: set[str]
) -> None:
    """After a collect with threshold 0 the store holds exactly what live blobs need."""
    needed: set[bytes] = set()
    for blob_id in live:
        data, secret = contents[blob_id]
        needed |= _chunk_ids(data, _id_key(keys, secret))
    stats = store.stats()
    assert (stats.blobs, stats.chunks) == (len(live), len(needed)), (
        f"expected {len(live)} lists and {len(needed)} chunks, found {stats}"
    )
    for blob_id in contents.keys() - live:
        assert not store.exists(blob_id), f"garbage blob {blob_id} is still there"


# --- behaviour --------------------------------------------------------------------------------


@pytest.fixture(params=["encrypted", "plain", "secrets"])
def keys(request: pytest.FixtureRequest) -> Keys:
    return make_keys(request.param)


def _shared_store(root: Path, keys: Keys) -> tuple[BlobStore, dict[str, bytes]]:
    """Six blobs over three sealed packs; every blob shares chunks with another."""
    pieces = _pieces(7, 6)
    store = open_store(root, keys, pack_max_bytes=10**9)
    contents: dict[str, bytes] = {}
    secret = keys.secret_codec is not None
    for i in range(6):
        data = pieces[i] + pieces[(i + 1) % 6] + pieces[(i + 3) % 6]
        ref = store.put_bytes(data, secret=secret and i % 2 == 0)
        contents[ref.id] = data
        if i % 2:
            store.seal()
    return store, contents


def test_shared_chunks_of_a_garbage_blob_stay(tmp_path: Path, keys: Keys) -> None:
    store, contents = _shared_store(tmp_path, keys)
    ids = list(contents)
    report = store.collect({ids[1]}, protect_newer_than_s=0, rewrite_threshold=0.0)
    assert store.read(ids[1]) == contents[ids[1]]
    assert report.objects_removed > 0 and report.bytes_freed > 0
    assert report.packs_rewritten or report.packs_deleted
    assert all(not store.exists(i) for i in ids if i != ids[1])
    store.close()


def test_dry_run_changes_nothing_and_predicts(tmp_path: Path, keys: Keys) -> None:
    store, contents = _shared_store(tmp_path, keys)
    live = set(list(contents)[:2])
    before = _files(tmp_path)
    planned = store.collect(live, dry_run=True, protect_newer_than_s=0, rewrite_threshold=0.0)
    assert _files(tmp_path) == before, "a dry run touches no file"
    assert all(store.read(i) == d for i, d in contents.items()), "and keeps every blob"
    done = store.collect(live, protect_newer_than_s=0, rewrite_threshold=0.0)
    assert done == planned, "the dry run reported what the real run did"
    store.close()


def test_the_threshold_leaves_little_garbage_in_place(tmp_path: Path) -> None:
    keys = make_keys("plain")
    with open_store(tmp_path, keys, pack_max_bytes=10**9) as store:
        keep = [store.put_bytes(os.urandom(20_000)) for _ in range(9)]
        small = store.put_bytes(os.urandom(2_000))
        store.seal()
        live = {r.id for r in keep}
        lazy = store.collect(live, protect_newer_than_s=0, rewrite_threshold=0.5)
        assert lazy.packs_rewritten == () and lazy.packs_deleted == ()
        assert lazy.garbage_bytes > 2_000, "the garbage left behind is reported"
        assert store.exists(small.id)
        eager = store.collect(live, protect_newer_than_s=0, rewrite_threshold=0.01)
        assert len(eager.packs_rewritten) == 1 and eager.garbage_bytes == 0
        assert not store.exists(small.id)
        assert all(store.read(r.id) for r in keep)


def test_recent_puts_are_protected(tmp_path: Path) -> None:
    keys = make_keys("encrypted")
    with open_store(tmp_path, keys) as store:
        ref = store.put_bytes(b"not yet in any event" * 50)
        store.seal()
        assert store.collect([]).objects_removed == 0, "just put: its event may be on its way"
        assert store.exists(ref.id)
    with open_store(tmp_path, keys) as store:
        assert store.collect([]).objects_removed == 0, "a pack written an hour ago or less"
        assert store.collect([], protect_newer_than_s=0).objects_removed == 2
        assert not store.exists(ref.id)


def test_a_deduplicated_put_is_protected(tmp_path: Path) -> None:
    keys = make_keys("plain")
    data = b"same content again" * 100
    with open_store(tmp_path, keys) as store:
        ref = store.put_bytes(data)
        store.seal()
    old = time.time() - 7200
    for pack in (tmp_path / "blobs" / "packs").iterdir():
        os.utime(pack, (old, old))  # written long ago
    with open_store(tmp_path, keys) as store:
        assert store.put_bytes(data) == ref, "stored once: the put writes nothing"
        assert store.collect([]).objects_removed == 0, "but it is recent, and kept"
        assert store.read(ref.id) == data


def test_missing_and_malformed_live_ids(tmp_path: Path) -> None:
    with open_store(tmp_path, make_keys("plain")) as store:
        ref = store.put_bytes(b"x" * 5000)
        absent = "ab" * 32
        report = store.collect([ref.id, absent], protect_newer_than_s=0)
        assert report.missing == (absent,), "live ids the store lacks are reported"
        with pytest.raises(ConfigError, match="not a blob id"):
            store.collect(["nope"])
        with pytest.raises(ConfigError, match="rewrite_threshold"):
            store.collect([], rewrite_threshold=2)


def test_collect_needs_a_writable_store(tmp_path: Path) -> None:
    keys = make_keys("plain")
    with open_store(tmp_path, keys) as store:
        store.put_bytes(b"y" * 100)
    with (
        open_store(tmp_path, keys, writable=False) as store,
        pytest.raises(RepositoryError, match="read-only"),
    ):
        store.collect([])


def test_a_secrets_store_without_its_key_refuses(tmp_path: Path) -> None:
    keys = make_keys("secrets")
    with open_store(tmp_path, keys) as store:
        store.put_bytes(b"TOKEN=1\n", secret=True)
    before = _files(tmp_path)
    with (
        open_store(tmp_path, keys.without_key()) as store,
        pytest.raises(AuthError, match=r"needs its key.*--key-file"),
    ):
        store.collect([], protect_newer_than_s=0)
    assert _files(tmp_path) == before


def test_puts_wait_for_a_collect() -> None:
    gate, order = CollectGate(), []
    with gate.collect():
        putter = threading.Thread(target=lambda: _put_through(gate, order))
        putter.start()
        time.sleep(0.05)
        order.append("collect done")
    putter.join(2)
    assert order == ["collect done", "put"], "a put never runs inside a collect"


def _put_through(gate: CollectGate, order: list[str]) -> None:
    with gate.put():
        order.append("put")


# --- crashes ----------------------------------------------------------------------------------


class Crash(Exception):
    """Stands for the process dying at this point."""


def _crash_after(calls: int, real: Callable[..., Any]) -> Callable[..., Any]:
    left = [calls]

    def fake(*args: Any, **kw: Any) -> Any:
        if left[0] == 0:
            raise Crash
        left[0] -= 1
        return real(*args, **kw)

    return fake


def _copy_one_then_crash(real: Callable[..., Any]) -> Callable[..., Any]:
    def fake(self: PackSet, src: str, entries: list[Any]) -> None:
        real(self, src, entries[:1])
        raise Crash

    return fake


STEPS = [
    ("copy", "copy_in", 0),
    ("intent", "atomic_write", 0),
    ("shred", "shred_key", 0),
    ("shred", "shred_key", 1),
    ("unlink", "remove", 0),
    ("unlink", "remove", 1),
    ("unlink", "remove", 2),
    ("unlink", "remove", 4),
    ("fsync", "fsync_dir", 0),
]


@pytest.mark.parametrize(("step", "name", "calls"), STEPS, ids=[f"{s[0]}-{s[2]}" for s in STEPS])
def test_a_crash_at_any_step_loses_no_live_blob(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch, step: str, name: str, calls: int
) -> None:
    store, contents = _shared_store(tmp_path, keys)
    live = set(list(contents)[::3])
    if step == "copy":
        monkeypatch.setattr(PackSet, "copy_in", _copy_one_then_crash(PackSet.copy_in))
    else:
        monkeypatch.setattr(packs_module, name, _crash_after(calls, getattr(packs_module, name)))
    with pytest.raises(Crash):
        store.collect(live, protect_newer_than_s=0, rewrite_threshold=0.0)
    monkeypatch.undo()
    store.close()  # the process is gone: its files are closed (nothing was deleted after this)
    with open_store(tmp_path, keys, writable=False) as reader:
        for blob_id in live:
            assert reader.read(blob_id) == contents[blob_id], "a reader sees every live blob"
        assert reader.verify() == [], "and nothing damaged"
    with open_store(tmp_path, keys) as store:
        finished = [n for n in store.recovery_notes if "interrupted collect" in n]
        assert bool(finished) == (step in ("shred", "unlink")), store.recovery_notes
        assert not (tmp_path / "blobs" / "collect.json").exists()
        for blob_id in live:
            assert store.read(blob_id) == contents[blob_id], f"{step}: live blob lost"
        store.collect(live, protect_newer_than_s=0, rewrite_threshold=0.0)
        for blob_id in live:
            assert store.read(blob_id) == contents[blob_id]
        assert store.stats().blobs == len(live)
        assert store.verify() == []
    assert _key_files(tmp_path) <= _pack_ids(tmp_path), "no key of a deleted pack survives"


def test_puts_running_during_collects_lose_nothing(tmp_path: Path) -> None:
    keys = make_keys("encrypted")
    pieces = _pieces(11, 8)
    with open_store(tmp_path, keys, pack_max_bytes=PACK_BYTES) as store:
        old = [store.put_bytes(pieces[i] + pieces[i + 1]).id for i in range(0, 8, 2)]
        store.seal()
    past = time.time() - 7200
    for pack in (tmp_path / "blobs" / "packs").iterdir():
        os.utime(pack, (past, past))  # stored long ago, and garbage now
    with open_store(tmp_path, keys, pack_max_bytes=PACK_BYTES) as store:
        new: dict[str, bytes] = {}

        def put_many() -> None:
            rng = random.Random(3)
            for i in range(40):
                data = pieces[rng.randrange(8)] + i.to_bytes(4, "big") + pieces[rng.randrange(8)]
                new[store.put_bytes(data).id] = data  # reuses chunks of the garbage blobs

        putter = threading.Thread(target=put_many)
        putter.start()
        while putter.is_alive():
            store.collect([], rewrite_threshold=0.0)
        putter.join()
        store.collect([], rewrite_threshold=0.0)
        assert all(store.read(i) == d for i, d in new.items()), "a put raced a collect"
        assert not any(store.exists(i) for i in old if i not in new)
        assert store.verify() == []


@pytest.mark.parametrize(
    "text",
    ['{"version": 2, "delete": []}', '{"version": 1, "delete": ["../../etc"]}', "{"],
    ids=["version", "not-a-pack-id", "not-json"],
)
def test_a_damaged_collect_json_is_refused(tmp_path: Path, text: str) -> None:
    keys = make_keys("plain")
    with open_store(tmp_path, keys) as store:
        store.put_bytes(b"z" * 1000)
    (tmp_path / "blobs" / "collect.json").write_text(text)
    with pytest.raises(CorruptionError, match=r"collect\.json is malformed.*repair it"):
        open_store(tmp_path, keys)
