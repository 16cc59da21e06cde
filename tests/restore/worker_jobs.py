"""Job functions for the worker-process tests: a worker imports them by name."""

from __future__ import annotations

import os

from journal.repository import Repository


def doubled(repository: Repository, batch: list[int]) -> list[int]:
    """Each number doubled; 13 ends the worker abruptly, 7 raises."""
    assert repository.blobs is not None, "the worker opened the repository"
    if 13 in batch:
        os._exit(3)
    if 7 in batch:
        raise ValueError("seven is not allowed")
    return [2 * n for n in batch]
