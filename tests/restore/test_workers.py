"""Worker processes (``restore.workers``): real ones, started as a restore starts them."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from journal.repository import Reopener, Repository
from restore.workers import run_in_processes
from tests.conftest import new_key
from tests.restore.worker_jobs import doubled


@pytest.fixture
def reopen(tmp_path: Path) -> Reopener:
    secret = new_key()
    Repository.init(tmp_path / "repo", secret)
    return Reopener(tmp_path / "repo", secret)


Answers = dict[tuple[int, ...], list[int]]


def run(
    reopen: Reopener, batches: list[list[int]], processes: int
) -> tuple[Answers, list[list[int]]]:
    """Each batch's answer, and the batches left undone."""
    answers: Answers = {}
    undone = run_in_processes(
        batches, reopen, doubled, lambda b, r: answers.__setitem__(tuple(b), r), processes
    )
    return answers, undone


def test_every_batch_is_answered_by_some_worker(reopen: Reopener) -> None:
    batches = [[n, n + 100] for n in range(20)]
    batches = [b for b in batches if 7 not in b and 13 not in b]
    answers, undone = run(reopen, batches, 3)
    assert undone == []
    assert answers == {tuple(b): [2 * n for n in b] for b in batches}


def test_a_worker_that_dies_leaves_its_batch_and_the_others_go_on(
    reopen: Reopener, caplog: pytest.LogCaptureFixture
) -> None:
    batches = [[1], [2], [13], [4], [5], [6], [8]]
    with caplog.at_level(logging.WARNING, "hindsight.restore.workers"):
        answers, undone = run(reopen, batches, 2)
    assert undone == [[13]], "only the batch in the dead worker's hands"
    assert answers == {(n,): [2 * n] for n in (1, 2, 4, 5, 6, 8)}
    assert "a restore worker process failed" in caplog.text


def test_a_failing_job_is_reported_with_the_workers_reason(
    reopen: Reopener, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "hindsight.restore.workers"):
        answers, undone = run(reopen, [[7]], 1)
    assert answers == {} and undone == [[7]]
    assert "ValueError: seven is not allowed" in caplog.text


def test_workers_that_cannot_open_the_repository_do_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nowhere = Reopener(tmp_path / "missing", None)
    with caplog.at_level(logging.WARNING, "hindsight.restore.workers"):
        answers, undone = run(nowhere, [[1], [2], [3]], 2)
    assert answers == {} and sorted(undone) == [[1], [2], [3]]
    assert "missing" in caplog.text, "the worker's own error is passed on"
