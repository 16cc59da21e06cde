"""Named consumer checkpoints: get, set, all, name rules, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest

from journal.checkpoints import Checkpoints
from journal.errors import ConfigError, CorruptionError
from journal.keys import MasterSecret
from journal.repository import Repository
from journal.stores.local import LocalStore

INVALID_NAMES = ["", ".hidden", "-dash-first", "a/b", "../up", "with space", "ñandú", "x" * 101]
VALID_NAMES = ["a", "snapshotter", "restore-2025.11_25", "0", "x" * 100]


@pytest.fixture
def checkpoints(tmp_path: Path) -> Checkpoints:
    """Checkpoints in an empty local store."""
    return Checkpoints(LocalStore(tmp_path))


def test_missing_checkpoint_is_none(checkpoints: Checkpoints) -> None:
    assert checkpoints.get("never-set") is None
    assert checkpoints.all() == {}


@pytest.mark.parametrize("name", VALID_NAMES, ids=lambda n: n[:12])
def test_set_then_get(checkpoints: Checkpoints, name: str) -> None:
    checkpoints.set(name, 42)
    assert checkpoints.get(name) == 42, f"{name!r} reads back what was set"


def test_set_replaces_and_may_go_back(checkpoints: Checkpoints) -> None:
    checkpoints.set("c", 10)
    checkpoints.set("c", 500)
    assert checkpoints.get("c") == 500
    checkpoints.set("c", 0)  # a consumer rewound to replay from the start
    assert checkpoints.get("c") == 0


def test_all(checkpoints: Checkpoints) -> None:
    want = {"snapshots": 120, "exporter": 7, "a.b-c_d": 0}
    for name, seq in want.items():
        checkpoints.set(name, seq)
    assert checkpoints.all() == want, "every checkpoint, by name"


@pytest.mark.parametrize("name", INVALID_NAMES, ids=repr)
def test_invalid_names_are_rejected(checkpoints: Checkpoints, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid checkpoint name"):
        checkpoints.set(name, 1)
    with pytest.raises(ConfigError, match="invalid checkpoint name"):
        checkpoints.get(name)
    assert checkpoints.all() == {}, "nothing was written"


def test_name_with_trailing_newline_is_rejected(checkpoints: Checkpoints) -> None:
    with pytest.raises(ConfigError, match="invalid checkpoint name"):
        checkpoints.set("name\n", 1)


def test_negative_seq_is_rejected(checkpoints: Checkpoints) -> None:
    with pytest.raises(ValueError, match="negative"):
        checkpoints.set("c", -1)
    assert checkpoints.get("c") is None, "nothing was written"


def test_malformed_checkpoint_is_corruption(checkpoints: Checkpoints) -> None:
    checkpoints.store.put("checkpoints/broken.json", b'{"name": "broken"}')
    with pytest.raises(CorruptionError, match=r"checkpoints/broken\.json"):
        checkpoints.get("broken")


def test_persist_across_reopen(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        repo.checkpoints.set("snapshots", 1234)
        repo.checkpoints.set("exporter", 99)
    with Repository.open(repo_path, secret) as repo:
        assert repo.checkpoints.get("snapshots") == 1234, "a checkpoint survives a reopen"
        assert repo.checkpoints.all() == {"snapshots": 1234, "exporter": 99}
        repo.checkpoints.set("exporter", 100)  # consumers checkpoint without the writer lock
    with Repository.open(repo_path, secret) as repo:
        assert repo.checkpoints.get("exporter") == 100
