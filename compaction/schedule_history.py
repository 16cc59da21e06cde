"""Job history: what each scheduled job did, kept crash-safely for ``hindsight status``.

One JSON file holds, per job, the *last fire* (the latest fire time the scheduler has
handled, or the baseline it recorded when it first saw the job: at start it compares this
with the cron to find runs missed while the daemon was down) and the job's last runs, oldest
first, at most ``max_runs`` of them. Every change rewrites the whole file (a few kilobytes)
with a temp file, fsync, rename and directory fsync, so a reader in another process sees
the old or the new file, never a mix, and a crash loses at most the change being written.

A run's *result* is one of:

    ok           the job returned; ``message`` is its result text, if any
    failed       the job raised; ``message`` is the error, one line
    skipped      it was due while the previous run of the job had not finished
    running      it has started and not ended (left behind by a crash until the next start)
    interrupted  the daemon stopped (or crashed) during the run; it runs again at next start
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

from compaction.schedule_cron import Schedule
from journal.errors import CorruptionError, RepositoryError
from journal.fsutil import atomic_write, fsync_dir

__all__ = ["DEFAULT_MAX_RUNS", "JobHistory", "JobRun", "JobStatus", "RunResult"]

RunResult = Literal["ok", "failed", "skipped", "running", "interrupted"]

DEFAULT_MAX_RUNS: Final = 50
_FORMAT: Final = "hindsight-job-history"
_VERSION: Final = 1


@dataclass(frozen=True)
class JobRun:
    """One run of a job (or one skipped fire time). Times are aware datetimes in UTC."""

    job: str
    scheduled: datetime
    result: RunResult
    started: datetime | None = None
    ended: datetime | None = None
    message: str = ""
    catch_up: bool = False  # run at start for fire times missed while the daemon was down

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO 8601 strings), as stored and as ``--json`` shows it."""
        return {
            "job": self.job,
            "scheduled": _iso(self.scheduled),
            "result": self.result,
            "started": _iso(self.started),
            "ended": _iso(self.ended),
            "message": self.message,
            "catch_up": self.catch_up,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobRun:
        """Inverse of ``as_dict``; raises ValueError, KeyError or TypeError on bad input."""
        if d["result"] not in get_args(RunResult):
            raise ValueError(f"unknown result {d['result']!r}")
        scheduled = _parse(d["scheduled"])
        if scheduled is None:
            raise ValueError("a run has no scheduled time")
        return cls(
            job=str(d["job"]),
            scheduled=scheduled,
            result=d["result"],
            started=_parse(d.get("started")),
            ended=_parse(d.get("ended")),
            message=str(d.get("message", "")),
            catch_up=bool(d.get("catch_up", False)),
        )


@dataclass(frozen=True)
class JobStatus:
    """What ``hindsight status`` shows for one configured job."""

    job: str
    cron: str
    last: JobRun | None  # the latest run or skip; None if the job never ran
    next_due: datetime  # the next fire time after now
    overdue_since: datetime | None  # first fire time not yet handled (daemon down), else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "job": self.job,
            "cron": self.cron,
            "last": self.last.as_dict() if self.last else None,
            "next_due": _iso(self.next_due),
            "overdue_since": _iso(self.overdue_since),
        }


@dataclass
class _JobRecord:
    last_fire: datetime
    runs: list[JobRun]


class JobHistory:
    """The job history file at ``path``, loaded on construction (a missing file is empty).

    Readers (``hindsight status``) only construct it and read. The scheduler is its one
    writer; writing methods are thread-safe, so it may call them from worker threads.
    A file that does not parse raises CorruptionError, unless ``reset_corrupt``: then it is
    moved aside to ``<name>.corrupt``, the history starts empty and ``note`` says so.
    """

    def __init__(
        self, path: Path, *, max_runs: int = DEFAULT_MAX_RUNS, reset_corrupt: bool = False
    ) -> None:
        if max_runs < 1:
            raise ValueError("max_runs must be at least 1")
        self.path, self.max_runs = Path(path), max_runs
        self.note = ""
        self._lock = threading.Lock()
        try:
            self._jobs = _load(self.path)
        except CorruptionError as exc:
            if not reset_corrupt:
                raise
            self._jobs = {}
            self._move_aside(exc)

    # --- reading ----------------------------------------------------------------------------

    def last_fire(self, job: str) -> datetime | None:
        """The latest fire time handled for ``job`` (or its baseline); None if never seen."""
        with self._lock:
            record = self._jobs.get(job)
            return record.last_fire if record else None

    def runs(self, job: str) -> list[JobRun]:
        """The kept runs of ``job``, oldest first."""
        with self._lock:
            record = self._jobs.get(job)
            return list(record.runs) if record else []

    def last_runs(self) -> dict[str, JobRun]:
        """The latest run (or skip) of every job that has one."""
        with self._lock:
            return {name: r.runs[-1] for name, r in self._jobs.items() if r.runs}

    def needs_rerun(self, job: str) -> bool:
        """True if the latest run that was not skipped was interrupted (or is still running)."""
        for run in reversed(self.runs(job)):
            if run.result != "skipped":
                return run.result in ("interrupted", "running")
        return False

    def summary(self, schedules: Iterable[Schedule], *, now: datetime) -> list[JobStatus]:
        """Per configured job: its latest run, the next fire time, and whether it is overdue."""
        out, last_runs = [], self.last_runs()
        for s in schedules:
            last_fire = self.last_fire(s.job)
            missed = s.next_after(last_fire) if last_fire else None
            out.append(
                JobStatus(
                    job=s.job,
                    cron=s.cron,
                    last=last_runs.get(s.job),
                    next_due=s.next_after(now),
                    overdue_since=missed if missed and missed <= now else None,
                )
            )
        return out

    # --- writing (the scheduler) ------------------------------------------------------------

    def set_baseline(self, job: str, at: datetime) -> None:
        """Start tracking ``job`` at ``at``: fire times before it are never caught up."""
        with self._lock:
            self._jobs[job] = _JobRecord(last_fire=at.astimezone(UTC), runs=[])
            self._save()

    def add(self, run: JobRun) -> None:
        """Append ``run`` and mark its scheduled time handled (``running`` to start a run)."""
        with self._lock:
            record = self._jobs.setdefault(run.job, _JobRecord(run.scheduled, []))
            record.last_fire = max(record.last_fire, run.scheduled)
            record.runs.append(run)
            del record.runs[: -self.max_runs]
            self._save()

    def finish(self, run: JobRun) -> None:
        """Replace the job's ``running`` record by ``run`` (appends if there is none)."""
        with self._lock:
            record = self._jobs.setdefault(run.job, _JobRecord(run.scheduled, []))
            for i in range(len(record.runs) - 1, -1, -1):
                if record.runs[i].result == "running":
                    record.runs[i] = run
                    break
            else:
                record.runs.append(run)
                del record.runs[: -self.max_runs]
            self._save()

    def interrupt_unfinished(self, message: str) -> list[str]:
        """Mark runs left ``running`` by a crashed daemon as interrupted; returns their jobs."""
        with self._lock:
            jobs = []
            for name, record in self._jobs.items():
                for i, run in enumerate(record.runs):
                    if run.result == "running":
                        record.runs[i] = replace(run, result="interrupted", message=message)
                        jobs.append(name)
            if jobs:
                self._save()
            return jobs

    # --- storage ----------------------------------------------------------------------------

    def _save(self) -> None:
        doc = {
            "format": _FORMAT,
            "version": _VERSION,
            "jobs": {
                name: {
                    "last_fire": _iso(r.last_fire),
                    "runs": [run.as_dict() for run in r.runs],
                }
                for name, r in self._jobs.items()
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(doc, indent=1).encode())

    def _move_aside(self, exc: CorruptionError) -> None:
        aside = self.path.with_name(self.path.name + ".corrupt")
        os.replace(self.path, aside)
        fsync_dir(self.path.parent)
        self.note = f"{exc.reason}; moved it to {aside.name} and started a new history"


def _load(path: Path) -> dict[str, _JobRecord]:
    """Parse the history file; CorruptionError for anything unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RepositoryError(f"cannot read job history {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(raw)
    except ValueError as exc:  # also UnicodeDecodeError
        raise _corrupt(path, f"is not JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise _corrupt(path, "is not a job history file")
    if doc.get("version") != _VERSION:
        raise RepositoryError(
            f"job history {path} has version {doc.get('version')!r}, this Hindsight reads "
            f"version {_VERSION}: upgrade Hindsight"
        )
    try:
        return {name: _record(entry) for name, entry in cast(dict[str, Any], doc["jobs"]).items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _corrupt(path, f"has a malformed entry ({exc!r})") from exc


def _record(entry: dict[str, Any]) -> _JobRecord:
    last_fire = _parse(entry["last_fire"])
    if last_fire is None:
        raise ValueError("a job has no last fire time")
    return _JobRecord(last_fire, [JobRun.from_dict(run) for run in entry["runs"]])


def _corrupt(path: Path, what: str) -> CorruptionError:
    return CorruptionError(
        f"job history {path} {what}; move it aside to start a new history "
        "(runs missed meanwhile are then not caught up once)"
    )


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t is not None else None


def _parse(text: Any) -> datetime | None:
    if text is None:
        return None
    t = datetime.fromisoformat(str(text))
    if t.tzinfo is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return t.astimezone(UTC)
