"""Shared fixtures: repositories in every codec combination."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from journal.keys import MasterSecret
from journal.repository import Repository


@pytest.fixture(params=[True, False], ids=["encrypted", "plain"])
def secret(request: pytest.FixtureRequest) -> MasterSecret | None:
    """A master key for an encrypted repository, or None for a plain one."""
    return MasterSecret(key=os.urandom(32), origin="test key") if request.param else None


@pytest.fixture
def repo_path(tmp_path: Path, secret: MasterSecret | None) -> Path:
    """An initialised, empty repository."""
    path = tmp_path / "repo"
    Repository.init(path, secret)
    return path


@pytest.fixture
def writer(repo_path: Path, secret: MasterSecret | None) -> Iterator[Repository]:
    """The repository opened for writing."""
    with Repository.open(repo_path, secret, writable=True) as repo:
        yield repo
