"""The Store contract (see ``journal.protocols.Store``), run against every backend.

A backend is done when it passes this suite: add a factory to ``BACKENDS``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from journal.errors import ConfigError, NotFound
from journal.protocols import Store
from journal.stores.local import LocalStore

BACKENDS: dict[str, Callable[[Path], Store]] = {
    "local": lambda tmp: LocalStore(tmp / "store"),
}

INVALID_KEYS = ["", ".", "..", "../escape", "a/../../b", "/absolute", "/etc/passwd", "a/.."]


@pytest.fixture(params=BACKENDS.values(), ids=BACKENDS.keys())
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """An empty store of each backend."""
    factory: Callable[[Path], Store] = request.param
    return factory(tmp_path)


def test_put_get_round_trip(store: Store) -> None:
    payloads = {"a": b"alpha", "dir/b": bytes(range(256)), "dir/sub/c": b"", "d": b"\x00" * 5000}
    for key, data in payloads.items():
        store.put(key, data)
    for key, data in payloads.items():
        assert store.get(key) == data, f"{key} reads back exactly as put"


def test_put_replaces(store: Store) -> None:
    store.put("k", b"first version, longer")
    store.put("k", b"second")
    assert store.get("k") == b"second", "a second put replaces the object entirely"
    assert store.stat("k").size == len(b"second")


def test_stat(store: Store) -> None:
    store.put("dir/k", b"12345")
    st = store.stat("dir/k")
    assert (st.key, st.size) == ("dir/k", 5), st
    assert abs(st.mtime_ns - time.time_ns()) < 3600 * 10**9, f"mtime is about now: {st}"


@pytest.mark.parametrize("op", ["get", "stat"])
def test_missing_key_is_not_found(store: Store, op: str) -> None:
    store.put("present", b"x")
    with pytest.raises(NotFound, match="absent"):
        getattr(store, op)("absent")
    with pytest.raises(NotFound, match="absent/below"):
        getattr(store, op)("absent/below")


@pytest.mark.parametrize("op", ["get", "stat"])
def test_key_below_an_object_is_not_found(store: Store, op: str) -> None:
    store.put("present", b"x")
    with pytest.raises(NotFound, match="present/below"):
        getattr(store, op)("present/below")


def test_delete_is_idempotent(store: Store) -> None:
    store.put("k", b"x")
    store.delete("k")
    with pytest.raises(NotFound):
        store.get("k")
    store.delete("k")
    store.delete("never/there")
    assert list(store.list()) == [], "nothing is left"


def test_list_is_sorted_and_filtered_by_prefix(store: Store) -> None:
    keys = ["b/2", "a", "b/10", "c/x/y", "b/1", "ba", "B"]
    for key in keys:
        store.put(key, key.encode())
    assert list(store.list()) == sorted(keys), "every key, in lexicographic order"
    assert list(store.list("b/")) == ["b/1", "b/10", "b/2"], "keys under a prefix only"
    assert list(store.list("b")) == ["b/1", "b/10", "b/2", "ba"], "a prefix is a string prefix"
    assert list(store.list("zzz")) == [], "an unmatched prefix lists nothing"


def test_list_of_an_empty_store(store: Store) -> None:
    assert list(store.list()) == []
    assert list(store.list("journal/")) == []


@pytest.mark.parametrize("key", INVALID_KEYS, ids=repr)
@pytest.mark.parametrize("op", ["put", "get", "stat", "delete"])
def test_invalid_key_is_rejected(store: Store, key: str, op: str) -> None:
    args = (key, b"data") if op == "put" else (key,)
    with pytest.raises(ConfigError, match="invalid store key"):
        getattr(store, op)(*args)


def _hammer(
    store: Store, check: Callable[[], None], writes: int, size: int
) -> tuple[int, list[BaseException]]:
    """Replace ``k`` ``writes`` times while another thread runs ``check`` in a loop."""
    errors: list[BaseException] = []
    done = threading.Event()
    checks = 0

    def reader() -> None:
        nonlocal checks
        try:
            while not done.is_set():
                check()
                checks += 1
        except BaseException as exc:
            errors.append(exc)

    store.put("k", bytes([0]) * size)
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(1, writes + 1):
            store.put("k", bytes([i % 256]) * size)
    finally:
        done.set()
        thread.join()
    return checks, errors


def test_put_is_atomic_for_concurrent_readers(store: Store) -> None:
    size = 1024 * 1024

    def check() -> None:
        data = store.get("k")
        assert len(data) == size, f"a reader saw {len(data)} of {size} bytes"
        assert data.count(data[:1]) == size, "a reader saw a mix of two versions"

    checks, errors = _hammer(store, check, writes=40, size=size)
    assert not errors, f"a concurrent reader saw a partial object: {errors[0]!r}"
    assert checks > 0, "the reader must have run during the writes"


def test_in_flight_writes_are_never_listed(store: Store) -> None:
    def check() -> None:
        listed = list(store.list())
        assert listed == ["k"], f"only the one key may ever be listed, saw {listed}"

    checks, errors = _hammer(store, check, writes=100, size=64 * 1024)
    assert not errors, f"a temp file of an in-flight write was listed: {errors[0]!r}"
    assert checks > 0, "the lister must have run during the writes"
