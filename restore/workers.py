"""Worker processes for restores large enough to pay for starting them.

Reading, checking and writing a file needs Python between its system calls, so the threads
of one process hand the GIL to each other at every call and barely run in parallel. Worker
processes share no GIL. Each is ``python -m restore.workers``: it imports only what its job
needs (a ``multiprocessing`` child would import the program's main module again, for the
CLI the whole of ``hindsight``), and is never a fork, which in a daemon would inherit locks
held by other threads. It reads a ``Reopener`` and the name of a module-level job function,
opens the repository read-only once, then answers batch after batch. Every message on its
stdin and stdout is a pickle after its length (u64, big-endian).
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

from journal.repository import Reopener, Repository

__all__ = ["MAX_PROCESSES", "MIN_BYTES", "process_count", "run_in_processes"]

MIN_BYTES = 64 * 1024 * 1024  # less work than this: starting processes costs more than it saves
MAX_PROCESSES = 8
LENGTH = struct.Struct(">Q")
# glibc, in workers: buffers of up to 32 MiB from the heap, and up to 64 MiB of freed memory
# kept. Otherwise each large buffer (a pack read, a decompressed chunk) is a fresh mapping
# whose pages fault in zeroed, again and again; this cuts a worker's page faults by 75%.
MALLOC_TUNING = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}

J = TypeVar("J")
R = TypeVar("R")

log = logging.getLogger("hindsight.restore.workers")


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
    """Run ``work`` (a module-level function) on each batch in ``processes`` workers;
    ``done`` gets each batch and its results as they come, in this thread.

    The batches no worker could do (it failed to start, or died) are returned for the caller
    to do itself; none otherwise.
    """
    pool: _Pool[J, R] = _Pool(batches, reopen, f"{work.__module__}:{work.__qualname__}")
    for _ in range(processes):
        pool.start_worker()
    pool.collect(done)
    return pool.undone


class _Pool(Generic[J, R]):
    """Worker processes and their driving threads (one each, blocked on its pipes)."""

    def __init__(self, batches: list[list[J]], reopen: Reopener, work: str) -> None:
        self.todo = deque(batches)
        self.hello = (reopen, work)
        self.lock = threading.Lock()
        self.answers: queue.Queue[tuple[list[J], list[R]] | None] = queue.Queue()
        self.undone: list[list[J]] = []
        self.drivers = 0

    def start_worker(self) -> None:
        """A worker and the thread that feeds it batches until none are left."""
        self.drivers += 1
        threading.Thread(target=self._drive, name="restore-worker", daemon=True).start()

    def collect(self, done: Callable[[list[J], list[R]], None]) -> None:
        """Hand every answer to ``done`` until the last driver ends; what was never done is
        then in ``undone``."""
        while self.drivers:
            answer = self.answers.get()
            if answer is None:
                self.drivers -= 1
            else:
                done(*answer)
        self.undone.extend(self.todo)
        self.todo.clear()

    def _next(self) -> list[J] | None:
        with self.lock:
            return self.todo.popleft() if self.todo else None

    def _drive(self) -> None:
        try:
            with tempfile.TemporaryFile() as errors:
                self._feed_one_worker(errors)
        finally:
            self.answers.put(None)

    def _feed_one_worker(self, errors: IO[bytes]) -> None:
        batch: list[J] | None = None
        try:
            with _spawn(errors) as worker:
                assert worker.stdin is not None and worker.stdout is not None
                _send(worker.stdin, self.hello)
                while (batch := self._next()) is not None:
                    _send(worker.stdin, batch)
                    self.answers.put((batch, _receive(worker.stdout)))
                    batch = None
                worker.stdin.close()
        except (OSError, EOFError, pickle.PickleError) as exc:
            if batch is not None:
                with self.lock:
                    self.undone.append(batch)
            log.warning("a restore worker process failed (%s); %s", _why(exc, errors), NOTE)


NOTE = "the files it had not staged are staged by the restore itself"


def _spawn(errors: IO[bytes]) -> subprocess.Popen[bytes]:
    """``python -m restore.workers``, able to import this copy of the code."""
    home = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (home, env.get("PYTHONPATH")) if p)
    env.update(MALLOC_TUNING)
    command = [sys.executable, "-m", "restore.workers"]
    pipe = subprocess.PIPE
    return subprocess.Popen(command, stdin=pipe, stdout=pipe, stderr=errors, env=env)


def _why(exc: BaseException, errors: IO[bytes]) -> str:
    """The worker's last line on stderr (its exception), else ``exc``."""
    errors.seek(0)
    lines = errors.read().decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else str(exc) or type(exc).__name__


def _send(pipe: IO[bytes], message: object) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    pipe.write(LENGTH.pack(len(data)) + data)
    pipe.flush()


def _receive(pipe: IO[bytes]) -> Any:
    """The next message; EOFError at a clean end (or a cut one)."""
    head = pipe.read(LENGTH.size)
    if len(head) < LENGTH.size:
        raise EOFError("the worker process ended")
    (length,) = LENGTH.unpack(head)
    data = pipe.read(length)
    if len(data) < length:
        raise EOFError("the worker process ended in the middle of an answer")
    return pickle.loads(data)


def main() -> None:
    """A worker: a ``Reopener`` and a job's name, then batches until stdin closes."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    reopen, name = _receive(inp)
    module, _, function = name.partition(":")
    work = getattr(importlib.import_module(module), function)
    with reopen.open() as repository:
        while True:
            try:
                batch = _receive(inp)
            except EOFError:
                return
            _send(out, work(repository, batch))


if __name__ == "__main__":
    main()
