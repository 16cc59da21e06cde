"""Long operations as jobs: queued, run in threads with bounded concurrency, followed by id.

A job outlives the request that started it (a client may disconnect); its progress and end
are published to subscribers (the WebSocket). At most ``concurrency`` jobs run at once, and
jobs on the same target (a restore's destination) one at a time, in the order submitted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from journal.errors import HindsightError

__all__ = ["Job", "JobQueue", "Progress"]

log = logging.getLogger("hindsight.api.jobs")

Progress = Callable[[dict[str, Any]], None]  # thread-safe: a job's work reports with it
KEPT = 1000  # finished jobs remembered for status requests


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Job:
    """One long operation and what is known of it."""

    id: str
    kind: str
    target: str
    requested_by: str
    status: str = "queued"  # queued | running | completed | failed
    progress: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    created_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation_id": self.id,
            "kind": self.kind,
            "target": self.target,
            "requested_by": self.requested_by,
            "status": self.status,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


class JobQueue:
    """The jobs of one server."""

    def __init__(self, concurrency: int = 2) -> None:
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self._slots = asyncio.Semaphore(concurrency)
        self._targets: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def submit(
        self, kind: str, target: str, requested_by: str, work: Callable[[Progress], Any]
    ) -> Job:
        """Queue ``work`` (run in a thread, given a progress callback); the job at once."""
        job = Job(f"job_{uuid.uuid4().hex[:16]}", kind, target, requested_by)
        self.jobs[job.id] = job
        while len(self.jobs) > KEPT:
            oldest = next(iter(self.jobs.values()))
            if oldest.finished_at is None:
                break
            self.jobs.popitem(last=False)
        task = asyncio.create_task(self._run(job, work), name=job.id)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._publish(job)
        return job

    async def ended(self, job_id: str, timeout_s: float) -> Job:
        """The job once it has ended, or as it is after ``timeout_s``."""
        job = self.jobs[job_id]
        events = self.events(job_id)
        try:
            async with asyncio.timeout(timeout_s):
                while job.status not in ("completed", "failed"):
                    await anext(events)
        except TimeoutError:
            pass
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        return job

    async def wait(self) -> None:
        """Until every job submitted so far has ended (a server stopping lets them finish)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def events(self, job_id: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Each change of ``job_id`` (None: of every job) from now on, as it happens."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=1000)
        self._subscribers.add(queue)
        try:
            while True:
                event = await queue.get()
                if job_id is None or event["operation_id"] == job_id:
                    yield event
        finally:
            self._subscribers.discard(queue)

    async def _run(self, job: Job, work: Callable[[Progress], Any]) -> None:
        target = self._targets.setdefault(job.target, asyncio.Lock()) if job.target else None
        async with self._slots:
            if target is not None:
                await target.acquire()
            try:
                await self._execute(job, work)
            finally:
                if target is not None:
                    target.release()

    async def _execute(self, job: Job, work: Callable[[Progress], Any]) -> None:
        loop = asyncio.get_running_loop()

        def progress(update: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(self._progressed, job, update)

        job.status, job.started_at = "running", _now()
        self._publish(job)
        try:
            job.result = await asyncio.to_thread(work, progress)
            job.status = "completed"
        except HindsightError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # a bug: logged whole, reported without its traceback
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.status, job.error = "failed", f"internal error ({type(exc).__name__})"
        job.finished_at = _now()
        self._publish(job)

    def _progressed(self, job: Job, update: dict[str, Any]) -> None:
        job.progress.update(update)
        self._publish(job)

    def _publish(self, job: Job) -> None:
        event = job.as_dict()
        for queue in list(self._subscribers):
            if queue.full():  # a subscriber that stopped reading loses the oldest event
                queue.get_nowait()
            queue.put_nowait(event)
