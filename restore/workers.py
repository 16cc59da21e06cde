"""Worker processes for restores large enough to pay for starting them.

Reading, checking and writing a file needs Python between its system calls, so the threads
of one process hand the GIL to each other at every call and barely run in parallel. Worker
processes share no GIL: each opens the repository read-only (``Reopener``) once, then runs
batches of jobs. They are started with ``spawn``, never ``fork``: the caller may be a daemon
with threads holding locks that a forked child would inherit held.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

from journal.repository import Reopener, Repository

__all__ = ["MAX_PROCESSES", "MIN_BYTES", "process_count", "run_in_processes"]

MIN_BYTES = 64 * 1024 * 1024  # less work than this: starting processes costs more than it saves
MAX_PROCESSES = 8

J = TypeVar("J")
R = TypeVar("R")

_repository: Repository | None = None  # in a worker: the repository it opened


def process_count(nbytes: int) -> int:
    """How many worker processes ``nbytes`` of work deserves: none below ``MIN_BYTES`` or
    with one CPU, else one per CPU this process may use (``MAX_PROCESSES`` at most)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not cpus or cpus < 2 or nbytes < MIN_BYTES:
        return 0
    return min(cpus, MAX_PROCESSES)


def run_in_processes(
    batches: list[list[J]],
    reopen: Reopener,
    work: Callable[[Repository, list[J]], list[R]],
    done: Callable[[list[J], list[R]], None],
    processes: int,
) -> list[list[J]]:
    """Run ``work`` on each batch in ``processes`` workers; ``done`` gets each batch and its
    results as they come (in this process). ``work`` must be a module-level function.

    The batches a broken pool left undone (a worker that could not open the repository, or
    was killed) are returned for the caller to do itself; none otherwise.
    """
    context = multiprocessing.get_context("spawn")
    undone: list[list[J]] = []
    with ProcessPoolExecutor(processes, context, initializer=_open, initargs=(reopen,)) as pool:
        pending: dict[Future[list[R]], list[J]] = {
            pool.submit(_run, work, batch): batch for batch in batches
        }
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                batch = pending.pop(future)
                if future.exception() is not None:
                    undone.append(batch)
                else:
                    done(batch, future.result())
    return undone


def _open(reopen: Reopener) -> None:
    """A worker's start: open the repository read-only, once."""
    global _repository
    _repository = reopen.open()


def _run(work: Callable[[Repository, list[J]], list[R]], batch: list[J]) -> list[R]:
    assert _repository is not None, "the worker's initializer opens the repository"
    return work(_repository, batch)
