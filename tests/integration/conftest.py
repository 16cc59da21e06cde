"""Fixtures for integration tests; every test in this directory is marked ``integration``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.mongo_server import MongoServer

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests collected from this directory ``integration``."""
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def mongo_server(tmp_path: Path) -> Iterator[MongoServer]:
    """A started nx-27017 server with its data under tmp_path; stopped afterwards."""
    with MongoServer(tmp_path / "mongo") as server:
        yield server
