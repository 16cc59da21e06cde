"""Shared fixtures: repositories in every codec combination.

``secret`` is the key a test opens the repository with: a master key ("encrypted": an
"aes-256-gcm" repository) or None ("plain"). The plain ``repo_path`` is a "secrets"
repository, the mode ``hindsight init`` makes without ``--encrypt``: it has a key ring, but
its key is deliberately kept from the tests, so every journal test also proves that such a
repository's journal is fully usable without the key. Tests that call
``Repository.init(path, None)`` themselves make legacy "none" repositories.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from journal.keys import MasterSecret
from journal.repository import Repository

# HYPOTHESIS_PROFILE=thorough hunts for rare failing inputs before CI's random draw meets them.
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def new_key(origin: str = "test key") -> MasterSecret:
    """A fresh random master key."""
    return MasterSecret(key=os.urandom(32), origin=origin)


@pytest.fixture(params=[True, False], ids=["encrypted", "plain"])
def secret(request: pytest.FixtureRequest) -> MasterSecret | None:
    """A master key for an encrypted repository, or None for a plain one."""
    return new_key() if request.param else None


@pytest.fixture
def repo_path(tmp_path: Path, secret: MasterSecret | None) -> Path:
    """An initialised, empty repository: "aes-256-gcm" with ``secret``, else "secrets"."""
    path = tmp_path / "repo"
    if secret is None:
        Repository.init(path, new_key("withheld key"), encrypt_all=False)
    else:
        Repository.init(path, secret)
    return path


@pytest.fixture
def writer(repo_path: Path, secret: MasterSecret | None) -> Iterator[Repository]:
    """The repository opened for writing."""
    with Repository.open(repo_path, secret, writable=True) as repo:
        yield repo


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For CLI tests: an empty working directory with no Hindsight environment variables."""
    monkeypatch.chdir(tmp_path)
    for var in ("HINDSIGHT_CONFIG", "HINDSIGHT_KEY", "HINDSIGHT_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path
