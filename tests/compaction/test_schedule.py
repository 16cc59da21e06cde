"""The job scheduler on a fake clock: fire times, catch-up, no overlap, failures, history."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from compaction.schedule import (
    Job,
    JobHistory,
    JobRun,
    Schedule,
    Scheduler,
    check_cron,
)
from journal.errors import ConfigError, CorruptionError, RepositoryError

T0 = datetime(2026, 5, 4, 0, 30, tzinfo=UTC)  # a Monday
BERLIN = ZoneInfo("Europe/Berlin")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A UTC time in May 2026."""
    return datetime(2026, 5, day, hour, minute, tzinfo=UTC)


class FakeClock:
    """Time that moves only when the scheduler sleeps, and then at once.

    ``sleep`` advances to its target, or to the first hook (``on``) or ``until`` before it;
    reaching ``until`` sets ``stop``.
    """

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.until = start + timedelta(days=365)
        self.stop = asyncio.Event()
        self.sleeps = 0
        self._hooks: list[tuple[datetime, Callable[[], object]]] = []

    def __call__(self) -> datetime:
        return self.now

    def on(self, when: datetime, action: Callable[[], object]) -> None:
        """Call ``action`` when time reaches ``when``."""
        self._hooks.append((when, action))
        self._hooks.sort(key=lambda hook: hook[0])

    async def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        target = min(self.now + timedelta(seconds=seconds), self.until)
        if self._hooks and self._hooks[0][0] <= target:
            target, action = self._hooks.pop(0)
            self.now = max(self.now, target)
            action()
        else:
            self.now = target
        if self.now >= self.until:
            self.stop.set()
        await asyncio.sleep(0)


async def inline(change: Callable[[], object]) -> object:
    """Run a history write on the event loop, so the fake clock sees writes in order."""
    return change()


class Work:
    """A job body that records its calls; ``hold`` keeps a run going until it is set."""

    def __init__(self, clock: FakeClock, *, hold: asyncio.Event | None = None) -> None:
        self.clock, self.hold = clock, hold
        self.started: list[datetime] = []
        self.active = self.max_active = 0
        self.fail_next: Exception | None = None

    async def __call__(self) -> str | None:
        self.started.append(self.clock())
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.hold is not None:
                await self.hold.wait()
            if self.fail_next is not None:
                exc, self.fail_next = self.fail_next, None
                raise exc
            return f"run {len(self.started)}"
        finally:
            self.active -= 1


def job(name: str, cron: str, work: Work, *, heavy: bool = True) -> Job:
    return Job(Schedule(name, cron, tz=UTC), work, heavy=heavy)


def scheduler(
    jobs: list[Job],
    history: JobHistory,
    clock: FakeClock,
    *,
    max_concurrent: int | None = 1,
    max_sleep_s: float = 86400.0,  # fewer idle wake-ups; the cap has its own test
) -> Scheduler:
    return Scheduler(
        jobs,
        history,
        clock=clock,
        sleep=clock.sleep,
        offload=inline,
        max_concurrent=max_concurrent,
        max_sleep_s=max_sleep_s,
    )


async def run_until(
    s: Scheduler, clock: FakeClock, until: datetime, *, drain_timeout_s: float | None = None
) -> None:
    clock.until = until
    await asyncio.wait_for(s.run(clock.stop, drain_timeout_s=drain_timeout_s), timeout=5)


def results(history: JobHistory, name: str) -> list[tuple[datetime, str]]:
    return [(r.scheduled, r.result) for r in history.runs(name)]


# --- cron and fire times ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("0 3 * * *", at(4, 0, 30), at(4, 3)),
        ("0 3 * * *", at(4, 3), at(5, 3)),  # strictly after
        ("0 2 * * 0", at(4, 0, 30), at(10, 2)),  # next Sunday
        ("*/15 * * * *", at(4, 0, 31), at(4, 0, 45)),
        ("@hourly", at(4, 0, 30), at(4, 1)),
    ],
    ids=["daily", "daily-at-fire-time", "weekly-sunday", "every-15-min", "alias"],
)
def test_next_fire_time(cron: str, after: datetime, expected: datetime) -> None:
    assert Schedule("j", cron, tz=UTC).next_after(after) == expected


def test_latest_fire_time_at_or_before() -> None:
    daily = Schedule("j", "0 3 * * *", tz=UTC)
    assert daily.last_at_or_before(at(4, 3)) == at(4, 3), "a fire time is at-or-before itself"
    assert daily.last_at_or_before(at(7, 2, 59)) == at(6, 3)


def test_schedule_reads_cron_in_its_time_zone() -> None:
    berlin = Schedule("j", "0 3 * * *", tz=BERLIN)
    assert berlin.next_after(at(4, 0, 30)) == at(4, 1), "03:00 in Berlin (CEST) is 01:00 UTC"


@pytest.mark.parametrize(
    ("cron", "problem"),
    [
        ("61 * * * *", "out of range"),
        ("0 3 * *", "4 fields, not 5"),
        ("0 0 3 * * *", "6 fields, not 5"),
        ("0 0 31 2 *", "never fires"),
        ("@reboot", "not a known alias"),
        ("*/0 * * * *", "not acceptable"),
    ],
    ids=["range", "too-few", "seconds-field", "never", "reboot", "zero-step"],
)
def test_invalid_cron_is_a_config_error_naming_job_and_expression(cron: str, problem: str) -> None:
    said = check_cron(cron)
    assert said is not None and problem in said, said
    with pytest.raises(ConfigError) as caught:
        Schedule("full", cron)
    message = str(caught.value)
    assert "'full'" in message and repr(cron) in message and "5 fields" in message, message


@pytest.mark.parametrize("cron", ["0 2 * * 0", "0 3 * * *", "*/5 1-6 * jan-dec mon-fri", "@daily"])
def test_valid_cron(cron: str) -> None:
    assert check_cron(cron) is None


def test_dst_repeated_hour_fires_once_and_missing_hour_fires_after_the_gap() -> None:
    daily = Schedule("j", "30 2 * * *", tz=BERLIN)
    first = daily.next_after(datetime(2026, 10, 24, 12, tzinfo=UTC))
    second = daily.next_after(first)
    assert (first.astimezone(BERLIN).hour, first.astimezone(BERLIN).minute) == (2, 30)
    assert second - first == timedelta(hours=25), "02:30 happens twice on 25 Oct; runs once"
    spring = daily.next_after(datetime(2026, 3, 28, 12, tzinfo=UTC)).astimezone(BERLIN)
    assert (spring.day, spring.hour, spring.minute) == (29, 3, 0), "02:30 does not exist"
    quarter = Schedule("q", "*/15 * * * *", tz=BERLIN)
    t, fires = datetime(2026, 10, 24, 23, 50, tzinfo=UTC), []
    while t < datetime(2026, 10, 25, 3, tzinfo=UTC):
        t = quarter.next_after(t)
        fires.append(t)
    walls = [f.astimezone(BERLIN).strftime("%H:%M") for f in fires]
    assert len(walls) == len(set(walls)), f"a wall-clock time fired twice: {walls}"


# --- the scheduler ----------------------------------------------------------------------------


async def test_new_job_does_not_catch_up_and_runs_at_its_fire_times(tmp_path: Path) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    work = Work(clock)
    await run_until(scheduler([job("inc", "0 3 * * *", work)], history, clock), clock, at(6, 4))
    assert work.started == [at(4, 3), at(5, 3), at(6, 3)], "no run at start without history"
    assert history.last_fire("inc") == at(6, 3)
    assert [r.result for r in history.runs("inc")] == ["ok"] * 3
    assert history.runs("inc")[-1].message == "run 3"


async def test_missed_runs_run_once_at_start_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    clock = FakeClock(T0)
    first = Work(clock)
    await run_until(
        scheduler([job("inc", "0 3 * * *", first)], JobHistory(path), clock), clock, at(4, 4)
    )
    assert first.started == [at(4, 3)]

    # The daemon is down for three days; a new process reads the same file.
    clock = FakeClock(at(7, 12))
    second, history = Work(clock), JobHistory(path)
    await run_until(scheduler([job("inc", "0 3 * * *", second)], history, clock), clock, at(8, 4))
    assert second.started == [at(7, 12), at(8, 3)], "one catch-up run, then the schedule"
    runs = history.runs("inc")
    assert [(r.scheduled, r.catch_up) for r in runs] == [
        (at(4, 3), False),
        (at(7, 3), True),  # the latest missed fire time
        (at(8, 3), False),
    ]


async def test_no_catch_up_when_nothing_was_missed(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    clock = FakeClock(T0)
    await run_until(
        scheduler([job("inc", "0 3 * * *", Work(clock))], JobHistory(path), clock), clock, at(4, 4)
    )
    clock = FakeClock(at(4, 5))
    work = Work(clock)
    await run_until(
        scheduler([job("inc", "0 3 * * *", work)], JobHistory(path), clock), clock, at(5, 4)
    )
    assert work.started == [at(5, 3)]


async def test_a_run_never_overlaps_the_previous_one(tmp_path: Path) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    hold = asyncio.Event()
    work = Work(clock, hold=hold)
    clock.on(at(4, 3, 30), hold.set)  # the 01:00 run lasts 2.5 hours
    await run_until(
        scheduler([job("scan", "0 * * * *", work)], history, clock), clock, at(4, 5, 30)
    )
    assert work.max_active == 1
    assert work.started == [at(4, 1), at(4, 4), at(4, 5)]
    assert results(history, "scan") == [
        (at(4, 1), "ok"),
        (at(4, 2), "skipped"),
        (at(4, 3), "skipped"),
        (at(4, 4), "ok"),
        (at(4, 5), "ok"),
    ]
    first, skipped = history.runs("scan")[:2]
    assert (first.started, first.ended) == (at(4, 1), at(4, 3, 30))
    assert "still going" in skipped.message, skipped.message


async def test_heavy_jobs_take_turns_and_light_ones_do_not_wait(tmp_path: Path) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    hold = asyncio.Event()
    full, verify, scan = Work(clock, hold=hold), Work(clock), Work(clock)
    clock.on(at(4, 3, 20), hold.set)
    jobs = [
        job("full", "0 2 * * *", full),
        job("verify", "10 2 * * *", verify),
        job("scan", "15 2 * * *", scan, heavy=False),
    ]
    await run_until(scheduler(jobs, history, clock), clock, at(4, 4))
    assert full.started == [at(4, 2)]
    assert scan.started == [at(4, 2, 15)], "a light job runs beside a heavy one"
    assert verify.started == [at(4, 3, 20)], "a heavy job waits for the slot"
    assert history.runs("verify")[0].scheduled == at(4, 2, 10)


async def test_no_limit_lets_heavy_jobs_overlap(tmp_path: Path) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    hold = asyncio.Event()
    full, verify = Work(clock, hold=hold), Work(clock)
    clock.on(at(4, 3), hold.set)
    jobs = [job("full", "0 2 * * *", full), job("verify", "10 2 * * *", verify)]
    await run_until(scheduler(jobs, history, clock, max_concurrent=None), clock, at(4, 4))
    assert verify.started == [at(4, 2, 10)]


async def test_failed_run_is_recorded_on_one_line_and_scheduling_goes_on(
    tmp_path: Path,
) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    work = Work(clock)
    work.fail_next = OSError("disk full\nwhile writing pack 17")
    await run_until(scheduler([job("inc", "0 3 * * *", work)], history, clock), clock, at(5, 4))
    failed, ok = history.runs("inc")
    assert (failed.result, failed.message) == ("failed", "OSError: disk full while writing pack 17")
    assert failed.ended == at(4, 3)
    assert ok.result == "ok", "the scheduler went on after a failure"


async def test_missed_fire_times_while_asleep_become_one_run(tmp_path: Path) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    work = Work(clock)

    def suspend() -> None:  # the machine sleeps for five hours
        clock.now += timedelta(hours=5)

    clock.on(at(4, 1, 30), suspend)
    await run_until(
        scheduler([job("scan", "0 * * * *", work)], history, clock), clock, at(4, 7, 30)
    )
    assert work.started == [at(4, 1), at(4, 6, 30), at(4, 7)]
    assert history.runs("scan")[1].scheduled == at(4, 6)


async def test_sleeps_are_capped_so_clock_steps_are_noticed(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    history = JobHistory(tmp_path / "h.json")
    s = scheduler([job("full", "0 2 * * 0", Work(clock))], history, clock, max_sleep_s=60.0)
    await run_until(s, clock, at(4, 1, 30))
    assert clock.sleeps == 60, "one wake-up a minute although the job is days away"


async def test_a_history_that_cannot_be_written_does_not_stop_the_jobs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "state" / "h.json")
    (tmp_path / "state").write_text("a file where the directory should be")
    work = Work(clock)
    await run_until(scheduler([job("inc", "0 3 * * *", work)], history, clock), clock, at(5, 4))
    assert work.started == [at(4, 3), at(5, 3)]
    assert [r.result for r in history.runs("inc")] == ["ok", "ok"], "kept in memory"
    assert "not written" in caplog.text


# --- stopping ---------------------------------------------------------------------------------


async def test_stop_waits_for_a_running_job(tmp_path: Path) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    hold = asyncio.Event()
    s = scheduler([job("inc", "0 3 * * *", Work(clock, hold=hold))], history, clock)
    running = asyncio.create_task(run_until(s, clock, at(4, 3, 10)))
    await clock.stop.wait()
    await asyncio.sleep(0.01)
    assert not running.done(), "the scheduler returned while its job was still running"
    hold.set()
    await running
    assert [r.result for r in history.runs("inc")] == ["ok"]


async def test_stop_cancels_after_the_timeout_and_the_run_is_redone_at_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.json"
    clock, hold = FakeClock(T0), asyncio.Event()
    s = scheduler([job("inc", "0 3 * * *", Work(clock, hold=hold))], JobHistory(path), clock)
    await run_until(s, clock, at(4, 3, 10), drain_timeout_s=0.01)
    history = JobHistory(path)
    (run,) = history.runs("inc")
    assert run.result == "interrupted" and "stopped" in run.message, run

    clock = FakeClock(at(4, 9))
    work = Work(clock)
    await run_until(scheduler([job("inc", "0 3 * * *", work)], history, clock), clock, at(4, 10))
    assert work.started == [at(4, 9)], "an interrupted run runs again at start"
    assert history.runs("inc")[-1].catch_up


async def test_a_run_left_running_by_a_crash_is_marked_interrupted_and_redone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "h.json"
    crashed = JobHistory(path)
    crashed.add(JobRun("inc", at(4, 3), "running", started=at(4, 3)))
    clock = FakeClock(at(4, 4))
    work, history = Work(clock), JobHistory(path)
    await run_until(scheduler([job("inc", "0 3 * * *", work)], history, clock), clock, at(4, 5))
    assert [r.result for r in history.runs("inc")] == ["interrupted", "ok"]
    assert work.started == [at(4, 4)]


async def test_stop_ends_a_real_sleep_promptly(tmp_path: Path) -> None:
    s = Scheduler(
        [Job(Schedule("full", "0 2 * * 0"), Work(FakeClock(T0)))], JobHistory(tmp_path / "h.json")
    )
    stop = asyncio.Event()
    task = asyncio.create_task(s.run(stop))
    await asyncio.sleep(0.05)
    began = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=2)
    assert time.monotonic() - began < 0.5


async def test_cancelling_the_scheduler_interrupts_running_jobs(tmp_path: Path) -> None:
    clock, history = FakeClock(T0), JobHistory(tmp_path / "h.json")
    hold = asyncio.Event()  # never set
    clock.until = at(4, 3, 10)
    s = scheduler([job("inc", "0 3 * * *", Work(clock, hold=hold))], history, clock)
    task = asyncio.create_task(s.run(asyncio.Event()))
    while not history.runs("inc"):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [r.result for r in history.runs("inc")] == ["interrupted"]


# --- the history ------------------------------------------------------------------------------


async def test_history_is_persisted_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "state" / "h.json"
    clock, history = FakeClock(T0), JobHistory(path, max_runs=3)
    jobs = [job("inc", "0 3 * * *", Work(clock)), job("scan", "0 * * * *", Work(clock))]
    await run_until(scheduler(jobs, history, clock), clock, at(9, 4))
    reread = JobHistory(path)
    for name in ("inc", "scan"):
        assert len(reread.runs(name)) == 3, name
        assert reread.runs(name) == history.runs(name)
    assert reread.runs("inc")[-1].scheduled == at(9, 3)
    assert reread.last_fire("inc") == at(9, 3)
    assert [p.name for p in path.parent.iterdir()] == ["h.json"], "no temp file left behind"


def test_summary_shows_last_run_next_due_and_overdue(tmp_path: Path) -> None:
    history = JobHistory(tmp_path / "h.json")
    history.add(JobRun("inc", at(4, 3), "running", started=at(4, 3)))
    history.finish(JobRun("inc", at(4, 3), "ok", at(4, 3), at(4, 3, 5), message="12 files"))
    history.set_baseline("verify", at(4, 0))
    schedules = [Schedule("inc", "0 3 * * *", tz=UTC), Schedule("verify", "0 4 * * *", tz=UTC)]
    inc, verify = history.summary(schedules, now=at(5, 3, 30))
    assert inc.last is not None and inc.last.message == "12 files"
    assert (inc.next_due, inc.overdue_since) == (at(6, 3), at(5, 3))
    assert (verify.last, verify.next_due) == (None, at(5, 4))
    assert verify.overdue_since == at(4, 4)
    json.dumps([inc.as_dict(), verify.as_dict()])  # --json can print it


@pytest.mark.parametrize(
    "content",
    [b'{"format": "hindsight-job-history", "version": 1, "jo', b"\xff\xfe", b"[1, 2]"],
    ids=["truncated", "binary", "not-a-history"],
)
def test_corrupt_history_is_a_clear_error_or_moved_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "h.json"
    path.write_bytes(content)
    with pytest.raises(CorruptionError) as caught:
        JobHistory(path)
    assert str(path) in str(caught.value) and "move it aside" in str(caught.value)
    history = JobHistory(path, reset_corrupt=True)
    assert history.last_runs() == {} and "moved it to h.json.corrupt" in history.note
    assert (tmp_path / "h.json.corrupt").read_bytes() == content


def test_malformed_entry_and_newer_version(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    doc = {"format": "hindsight-job-history", "version": 1, "jobs": {"inc": {"runs": []}}}
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptionError, match="malformed entry"):
        JobHistory(path)
    path.write_text(json.dumps({**doc, "version": 2}))
    with pytest.raises(RepositoryError, match="upgrade Hindsight"):
        JobHistory(path, reset_corrupt=True)


def test_unreadable_history_is_a_repository_error(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file where the directory should be")
    with pytest.raises(RepositoryError, match="cannot read job history"):
        JobHistory(tmp_path / "state" / "h.json")


def test_duplicate_job_names_are_rejected(tmp_path: Path) -> None:
    work = Work(FakeClock(T0))
    with pytest.raises(ConfigError, match="'inc'"):
        Scheduler(
            [job("inc", "0 3 * * *", work), job("inc", "0 4 * * *", work)],
            JobHistory(tmp_path / "h"),
        )
