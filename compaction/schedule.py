"""The job scheduler: runs each job on its cron schedule, one run at a time, with a history.

A *job* is a name, a ``Schedule`` (cron expression and time zone) and an async callable that
returns an optional short result text; the scheduler knows nothing of what jobs do. A *fire
time* is an instant the cron names; a *run* is one call of the callable. The rules:

- **Catch-up.** At start, a job whose history shows a fire time passed since the last one
  handled (the daemon was down), or whose last run was interrupted, runs once right away:
  one run, however many fire times were missed. A job the history has never seen does not
  catch up; the start is recorded as its baseline. Fire times passed while the loop was
  asleep too long (suspend, a clock step) likewise become one run.
- **No overlap.** A fire time reached while the job's previous run is still going (or
  still waiting for a slot) is recorded as ``skipped``, with the reason, rather than queued:
  the run in progress is doing the same work, queued runs would go back to back and hold
  up every other job, and a skip in ``hindsight status`` tells the operator the schedule is
  tighter than the job.
- **Concurrency.** Different jobs may overlap, but at most ``max_concurrent`` *heavy* runs
  at once (default 1): backups, verification and pruning all read the journal and compete
  for the same disk, and one after another they take no longer in total; a run waits for a
  slot in fire-time order. Light jobs (``heavy=False``) never wait.
- **Failures.** A job that raises is recorded ``failed`` with its error on one line (no
  traceback; that goes to the log) and the scheduler goes on.
- **Stop.** Setting ``stop`` ends the loop at once; runs still waiting for a slot are dropped
  (and caught up at the next start); runs in progress are awaited, or after
  ``drain_timeout_s`` cancelled and recorded ``interrupted`` (they run again at next start).

The clock and the sleep are injected, so tests drive time by hand. Blocking work belongs in
the job (``asyncio.to_thread``); history writes run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Final

from compaction.schedule_cron import CRON_ALIASES, CRON_HELP, Schedule, check_cron, local_timezone
from compaction.schedule_history import (
    DEFAULT_MAX_RUNS,
    JobHistory,
    JobRun,
    JobStatus,
    RunResult,
)
from journal.errors import ConfigError

__all__ = [
    "CRON_ALIASES",
    "CRON_HELP",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MAX_RUNS",
    "DEFAULT_MAX_SLEEP_S",
    "Job",
    "JobFn",
    "JobHistory",
    "JobRun",
    "JobStatus",
    "RunResult",
    "Schedule",
    "Scheduler",
    "check_cron",
    "local_timezone",
    "utc_now",
]

log = logging.getLogger("hindsight.compaction.schedule")

JobFn = Callable[[], Awaitable[str | None]]
"""What a job runs: returns a short result text (shown by ``hindsight status``) or None."""

DEFAULT_MAX_CONCURRENT: Final = 1
"""Heavy runs at once; see the module docstring for why one."""
DEFAULT_MAX_SLEEP_S: Final = 60.0
"""Longest single sleep, so a wall-clock step or a suspend is noticed within a minute."""
MAX_MESSAGE_CHARS: Final = 300

_CRASHED: Final = "interrupted: the daemon stopped during the run"
_CANCELLED: Final = "interrupted: the daemon stopped before the run ended"


def utc_now() -> datetime:
    """The default clock: the current time, aware, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Job:
    """A named periodic task: ``run`` is called at every fire time of ``schedule``.

    ``heavy`` runs count against the scheduler's ``max_concurrent``; light ones never wait.
    """

    schedule: Schedule
    run: JobFn
    heavy: bool = True

    @property
    def name(self) -> str:
        """The job's name, as in config, logs and history."""
        return self.schedule.job


@dataclass(eq=False)
class _JobState:
    job: Job
    next_fire: datetime
    catch_up: bool = False
    task: asyncio.Task[None] | None = None
    started: datetime | None = None  # None while the task waits for a slot


class Scheduler:
    """Runs ``jobs`` on their schedules and records every run in ``history``.

    ``clock`` returns the current aware time; ``sleep(seconds)`` waits; ``offload(fn)`` runs
    a blocking history write off the event loop (a worker thread; tests pass one that calls
    ``fn`` inline, so a fake clock sees every write land in order). ``max_concurrent=None``
    lifts the limit on heavy runs.
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        history: JobHistory,
        *,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        max_concurrent: int | None = DEFAULT_MAX_CONCURRENT,
        max_sleep_s: float = DEFAULT_MAX_SLEEP_S,
        offload: Callable[[Callable[[], object]], Awaitable[object]] = asyncio.to_thread,
    ) -> None:
        self.jobs = list(jobs)
        names = [job.name for job in self.jobs]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ConfigError(f"two scheduled jobs are named {dupes[0]!r}; give each its own")
        if max_concurrent is not None and max_concurrent < 1:
            raise ConfigError(f"max_concurrent must be at least 1 (or None), not {max_concurrent}")
        self.history = history
        self._clock, self._sleep, self._max_sleep_s = clock, sleep, max_sleep_s
        self._offload = offload
        self._limit = asyncio.Semaphore(max_concurrent) if max_concurrent else None
        self._states: list[_JobState] = []

    async def run(self, stop: asyncio.Event, *, drain_timeout_s: float | None = None) -> None:
        """Run jobs until ``stop`` is set, then wait for running ones (at most the timeout).

        Cancelling this coroutine cancels running jobs at once (they are recorded
        ``interrupted``).
        """
        try:
            self._states = await self._start()
            await self._loop(stop)
        except BaseException:
            await self._drain(0.0)
            raise
        await self._drain(drain_timeout_s)

    # --- the loop -----------------------------------------------------------------------------

    async def _start(self) -> list[_JobState]:
        """Find each job's next fire time: now for a catch-up, none missed for a new job."""
        now = self._clock()
        await self._write(partial(self.history.interrupt_unfinished, _CRASHED))
        states = []
        for job in self.jobs:
            last = self.history.last_fire(job.name)
            if last is None:
                await self._write(partial(self.history.set_baseline, job.name, now))
                states.append(_JobState(job, job.schedule.next_after(now)))
            elif job.schedule.next_after(last) <= now or self.history.needs_rerun(job.name):
                log.info("job %s: catching up (last fire handled %s)", job.name, last)
                states.append(_JobState(job, now, catch_up=True))
            else:
                states.append(_JobState(job, job.schedule.next_after(max(last, now))))
        return states

    async def _loop(self, stop: asyncio.Event) -> None:
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                now = self._clock()
                for state in self._states:
                    if state.next_fire <= now:
                        await self._fire(state, now)
                sleeper = asyncio.ensure_future(self._sleep(self._delay(now)))
                await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
        finally:
            stopper.cancel()

    def _delay(self, now: datetime) -> float:
        due = min((s.next_fire for s in self._states), default=None)
        seconds = (due - now).total_seconds() if due else self._max_sleep_s
        return min(max(seconds, 0.0), self._max_sleep_s)

    async def _fire(self, state: _JobState, now: datetime) -> None:
        """Start a run of the job, or record it skipped if the previous one is unfinished."""
        job = state.job
        scheduled = job.schedule.last_at_or_before(now) or now  # missed fires: the latest
        catch_up, state.catch_up = state.catch_up, False
        state.next_fire = job.schedule.next_after(now)
        if state.task is None:
            state.task = asyncio.create_task(
                self._run_job(state, scheduled, catch_up), name=f"job {job.name}"
            )
            return
        if state.started is not None:
            reason = f"the run started {state.started:%Y-%m-%d %H:%M:%S} UTC was still going"
        else:
            reason = "the previous run was still waiting for a free slot"
        log.warning("job %s: skipped the run due %s: %s", job.name, scheduled, reason)
        skipped = JobRun(job.name, scheduled, "skipped", message=reason)
        await self._write(partial(self.history.add, skipped))

    # --- one run ------------------------------------------------------------------------------

    async def _run_job(self, state: _JobState, scheduled: datetime, catch_up: bool) -> None:
        try:
            async with self._slot(state.job):
                state.started = self._clock()
                run = JobRun(
                    state.job.name, scheduled, "running", started=state.started, catch_up=catch_up
                )
                await self._write(partial(self.history.add, run))
                await self._call(state.job, run)
        finally:
            state.task, state.started = None, None

    @contextlib.asynccontextmanager
    async def _slot(self, job: Job) -> AsyncIterator[None]:
        if self._limit is None or not job.heavy:
            yield
            return
        async with self._limit:
            yield

    async def _call(self, job: Job, run: JobRun) -> None:
        log.info("job %s: started%s", job.name, " (catch-up)" if run.catch_up else "")
        try:
            text = await job.run()
        except asyncio.CancelledError:
            await self._end(run, "interrupted", _CANCELLED)
            raise
        except Exception as exc:
            log.warning("job %s failed", job.name, exc_info=True)
            await self._end(run, "failed", _one_line(f"{type(exc).__name__}: {exc}"))
        else:
            await self._end(run, "ok", _one_line("" if text is None else str(text)))

    async def _end(self, run: JobRun, result: RunResult, message: str) -> None:
        ended = replace(run, result=result, ended=self._clock(), message=message)
        log.info("job %s: %s%s", run.job, result, f": {message}" if message else "")
        await self._write(partial(self.history.finish, ended))

    # --- shutdown and bookkeeping -----------------------------------------------------------

    async def _drain(self, timeout_s: float | None) -> None:
        """Drop runs waiting for a slot; await running ones, cancelling them after the timeout."""
        for state in self._states:
            if state.task is not None and state.started is None:
                state.task.cancel()
        tasks = [s.task for s in self._states if s.task is not None]
        if not tasks:
            return
        if timeout_s != 0:
            log.info("waiting for %d running job(s) to finish", len(tasks))
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _write(self, change: Callable[[], object]) -> None:
        """Apply a history change off the event loop; a failed write is logged, not raised."""
        try:
            await self._offload(change)
        except OSError as exc:
            log.error("job history %s not written: %s", self.history.path, exc)


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_MESSAGE_CHARS else line[: MAX_MESSAGE_CHARS - 1] + "…"
