"""The daemon: continuous capture of every protected root and database until told to stop.

It replays the journal into the known state (files and MongoDB positions), starts each
MongoDB capture in its own worker thread (initial sync or resume, then change streams; it
retries by itself while the server is down, and the files stay protected meanwhile), starts
the watcher, runs a reconciling scan (so
changes made while it was down are captured), then turns watcher hints into journal events,
rescans periodically and on watcher overflow, seals old segments, and logs a status line.
Blocking work (reading files, fsync) runs in worker threads so the event loop stays
responsive; one capture lock keeps the journal and the known state in step. On SIGINT or
SIGTERM it stops taking hints, captures what is pending, and closes the repository, which
flushes and fsyncs: nothing acknowledged is lost, and nothing seen is left uncaptured.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from capture.filesystem import FileCapture, ScanSummary
from capture.mongo_state import KnownMongo
from capture.mongodb import MongoCapture
from capture.paths import FileRoot
from capture.state import KnownFiles
from capture.watcher import Hint, PathWatcher
from compaction.backup_maker import Scope
from compaction.backups import FULL, INCREMENTAL
from compaction.schedule import Job, JobHistory, Schedule, Scheduler
from hindsight.alerts import Alert, Alerter
from hindsight.backup_service import (
    BackupService,
    create_result_dict,
    job_history_path,
    prune_dict,
    rebuild_known,
)
from hindsight.config import default_config
from hindsight.control import answer_requests
from hindsight.daemon_state import write_state
from hindsight.status_report import status_report
from journal.errors import ConfigError, HindsightError
from journal.events import ChangeEvent
from journal.repository import Repository
from restore.operations import append_restore_start

__all__ = ["DEFAULT_SCAN_INTERVAL_S", "DEFAULT_STATUS_INTERVAL_S", "Daemon"]

log = logging.getLogger("hindsight.daemon")

DEFAULT_SCAN_INTERVAL_S = 900
DEFAULT_STATUS_INTERVAL_S = 60
SEAL_CHECK_S = 30
CONTROL_POLL_S = 0.5
QUOTA_CHECK_S = 300


class VerifyFailed(HindsightError):
    """A scheduled verification found problems (recorded as the job's failure)."""


@dataclass
class DaemonStats:
    """Counters for the status line."""

    hints: int = 0
    events: int = 0
    scans: int = 0
    started: float = 0.0


class Daemon:
    """Runs capture for ``roots`` into ``repo`` until ``stop`` is set."""

    def __init__(
        self,
        repo: Repository,
        roots: list[FileRoot],
        *,
        mongo: list[MongoCapture] | None = None,
        known_mongo: KnownMongo | None = None,
        service: BackupService | None = None,
        schedule: Mapping[str, str] | None = None,
        scan_interval_s: float = DEFAULT_SCAN_INTERVAL_S,
        status_interval_s: float = DEFAULT_STATUS_INTERVAL_S,
        settle_s: float = 0.1,
        max_wait_s: float = 0.4,
        alerter: Alerter | None = None,
    ) -> None:
        self.repo, self.roots = repo, roots
        self.scan_interval_s, self.status_interval_s = scan_interval_s, status_interval_s
        self.settle_s, self.max_wait_s = settle_s, max_wait_s
        self.stats = DaemonStats()
        self.known = KnownFiles()
        self.mongo = mongo or []
        self.known_mongo = known_mongo or KnownMongo()
        self.capture: FileCapture | None = None
        self.watcher: PathWatcher | None = None
        self.ready = asyncio.Event()  # set once the start-up scan is done
        self.service = service or BackupService(default_config(repo.root), repo)
        self.schedule = {name: cron for name, cron in (schedule or {}).items() if cron}
        self.history = JobHistory(job_history_path(repo), reset_corrupt=True)
        self.alerter = alerter
        self.lags: dict[str, float] = {}  # root -> worst capture lag (s) since the last report
        self.root_events: defaultdict[str, int] = defaultdict(int)  # root -> events captured

    async def run(self, stop: asyncio.Event) -> None:
        """Capture until ``stop`` is set; then drain and close cleanly."""
        self.stats.started = time.monotonic()
        await asyncio.to_thread(self._replay)
        mongo_stop = threading.Event()  # the MongoDB threads' copy of ``stop``
        try:
            async with asyncio.TaskGroup() as tasks:
                for capture in self.mongo:
                    tasks.create_task(asyncio.to_thread(capture.run, mongo_stop))
                tasks.create_task(self._capture_files(stop, mongo_stop))
                tasks.create_task(self._jobs(stop))
        finally:
            self.repo.log.sync()
            self._status()

    def _replay(self) -> None:
        rebuild_known(self.repo, self.service.snapshots, self.known, self.known_mongo)

    async def _jobs(self, stop: asyncio.Event) -> None:
        """Scheduled jobs and requests from other processes (``hindsight.control``)."""
        await self.ready.wait()
        if self.history.note:
            log.warning("job history: %s", self.history.note)
        jobs = [
            Job(Schedule(name, cron), self._job(name), heavy=name != "scan")
            for name, cron in self.schedule.items()
        ]
        async with asyncio.TaskGroup() as tasks:
            if jobs:
                tasks.create_task(Scheduler(jobs, self.history).run(stop, drain_timeout_s=60))
            tasks.create_task(self._every(CONTROL_POLL_S, stop, self._control))
            if self.service.quota_bytes:
                tasks.create_task(self._every(QUOTA_CHECK_S, stop, self._quota))

    async def _quota(self) -> None:
        """Over quota: raise the alert and prune by the retention policy."""
        notes = await asyncio.to_thread(self.service.enforce_quota)
        for note in notes:
            log.warning("%s", note)

    def _job(self, name: str) -> Callable[[], Awaitable[str | None]]:
        async def run() -> str | None:
            if name == "scan":
                if self.capture is not None:
                    await self._scan("scheduled")
                return None
            return await asyncio.to_thread(self._run_job, name)

        return run

    def _run_job(self, name: str) -> str:
        """One scheduled job, in a worker thread; its one-line result for the history."""
        service = self.service
        if name in (FULL, INCREMENTAL):
            result = service.create(name, Scope(), capture=False)
            b = result.backup.metadata
            verified = result.verification
            state = "" if verified is None else (" verified" if verified.ok else " VERIFY FAILED")
            return f"{b['backup_id']} ({b['type']}){state}" + "".join(
                f"; {n}" for n in result.notes
            )
        if name == "verify":
            reports = [service.verify(b.id, read_data=True) for b in service.newest_per_type()]
            bad = [r for r in reports if not r.ok]
            if bad:
                raise VerifyFailed("; ".join(f"{r.backup_id}: {r.problems[0]}" for r in bad))
            return ", ".join(f"{r.backup_id} ok" for r in reports) or "no backups yet"
        if name == "prune":
            report = service.prune()
            return (
                f"removed {len(report.backups_removed)} backups, freed {report.total_freed} bytes"
            )
        raise ValueError(f"unknown job {name}")

    async def _control(self) -> None:
        await asyncio.to_thread(answer_requests, self.repo.root, self._request)

    def _request(self, action: str, args: dict[str, Any]) -> Any:
        """A request from another ``hindsight`` process (run in a worker thread)."""
        log.info("request from another process: %s %s", action, args)
        if action == "backup":
            scope = Scope(tuple(args.get("scope") or Scope().parts))
            return create_result_dict(self.service.create(args["type"], scope, capture=False))
        if action == "prune":
            return prune_dict(self.service.prune(dry_run=bool(args.get("dry_run"))))
        if action == "delete":
            report = self.service.delete(
                str(args["backup_id"]),
                force=bool(args.get("force")),
                dry_run=bool(args.get("dry_run")),
            )
            return prune_dict(report)
        if action == "restore-start":
            return append_restore_start(self.repo.log, str(args["operation"]))
        raise ConfigError(f"unknown request {action!r}")

    async def _capture_files(self, stop: asyncio.Event, mongo_stop: threading.Event) -> None:
        """File capture until ``stop``; then (or on failure) tell the MongoDB threads too."""
        try:
            if self.roots:
                await self._watch_files(stop)
            else:
                self.ready.set()
                await asyncio.gather(
                    self._every(self.status_interval_s, stop, self._report),
                    self._every(SEAL_CHECK_S, stop, self._seal),
                )
        finally:
            mongo_stop.set()

    async def _watch_files(self, stop: asyncio.Event) -> None:
        capture = FileCapture(self.roots, self.repo.log, self.repo.blobs, self.known)
        self.capture = capture
        watched = [(r.name, r.path) for r in self.roots]
        async with PathWatcher(watched, self._wanted, self.settle_s, self.max_wait_s) as watcher:
            self.watcher = watcher
            await self._scan("start-up")
            self.ready.set()
            log.info("protecting %s", ", ".join(f"{r.name}={r.path}" for r in self.roots))
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._hints(watcher, stop))
                tasks.create_task(self._every(self.scan_interval_s, stop, self._periodic_scan))
                tasks.create_task(self._every(self.status_interval_s, stop, self._report))
                tasks.create_task(self._every(SEAL_CHECK_S, stop, self._seal))
            await self._handle(watcher.drain())  # what arrived while stopping

    def _wanted(self, root_name: str, relpath: str, is_dir: bool) -> bool:
        root = next(r for r in self.roots if r.name == root_name)
        return root.wants_dir(relpath) if is_dir else root.wants(relpath)

    async def _hints(self, watcher: PathWatcher, stop: asyncio.Event) -> None:
        while not stop.is_set():
            first = await _until(stop, watcher.get())
            if first is None:
                return
            await self._handle([first, *watcher.get_ready()])

    async def _handle(self, hints: list[Hint]) -> None:
        """Examine a burst of hints in a worker thread."""
        if hints:
            self.stats.hints += len(hints)
            await asyncio.to_thread(self._apply, hints)
            done = time.monotonic()
            for hint in hints:  # capture lag: from the first raw event to its journal append
                worst = self.lags.get(hint.root, 0.0)
                self.lags[hint.root] = max(worst, done - hint.first_seen)

    def _apply(self, hints: list[Hint]) -> None:
        """Rescans first, then moves, then one examine (one flush, one append) per root."""
        assert self.capture is not None
        by_root: dict[str, list[str]] = defaultdict(list)
        for hint in hints:
            if hint.kind == "rescan":
                self._log_scan(f"watcher asked ({hint.root})", self.capture.scan(hint.root))
            elif hint.kind == "moved" and hint.old_relpath is not None:
                self._count(self.capture.examine_move(hint.root, hint.old_relpath, hint.relpath))
            else:
                by_root[hint.root].append(hint.relpath)
        for root, paths in by_root.items():
            self._count(self.capture.examine(root, paths))

    def _count(self, events: list[ChangeEvent]) -> None:
        self.stats.events += len(events)
        for e in events:
            self.root_events[e.namespace] += 1
            log.debug("captured %s %s/%s seq %d", e.op.value, e.namespace, e.key, e.seq)

    async def _scan(self, why: str) -> None:
        assert self.capture is not None
        self._log_scan(why, await asyncio.to_thread(self.capture.scan))

    def _log_scan(self, why: str, summary: ScanSummary) -> None:
        self.stats.scans += 1
        self.stats.events += summary.events
        log.info(
            "scan (%s): %d files, %d new, %d changed, %d moved, %d deleted, %d problems",
            why,
            summary.files,
            summary.new,
            summary.changed,
            summary.moved,
            summary.deleted,
            len(summary.problems),
        )

    async def _periodic_scan(self) -> None:
        await self._scan("periodic")

    async def _seal(self) -> None:
        """Seal an old segment; sealed segments' events go to the Parquet history."""
        await asyncio.to_thread(self.repo.log.maybe_seal)
        await asyncio.to_thread(self.service.history.export)

    async def _report(self) -> None:
        """The status line; the state other processes read (published first, so the status
        the alerts are read from sees this daemon running); the alerts, sent."""
        self._status()
        state = self._state()
        await asyncio.to_thread(write_state, self.repo.root, state)
        if self.alerter is None:
            return
        config = self.service.config

        def evaluate() -> list[Alert]:
            with self.repo.reopener().open() as repo:  # as any reader sees it
                return [Alert(**a) for a in status_report(config, repo)["alerts"]]

        await self.alerter.update(await asyncio.to_thread(evaluate), time.time())

    def _state(self) -> dict[str, Any]:
        """What ``hindsight.daemon_state`` publishes: each source's capture state."""
        started = time.time() - (time.monotonic() - self.stats.started)
        files = [
            {"source": "filesystem", "name": r.name, "since": started,
             "state": "watching" if self.watcher is not None else "starting",
             "lag_s": round(self.lags.pop(r.name, 0.0), 3), "events": self.root_events[r.name]}
            for r in self.roots
        ]  # fmt: skip
        mongo = [
            {"source": "mongodb", "name": m.target.name, **dataclasses.asdict(m.status)}
            for m in self.mongo
        ]
        return {
            "started_at": started,
            "status_interval_s": self.status_interval_s,
            "capture": files + mongo,
        }

    def _status(self) -> None:
        s = self.stats
        log.info(
            "status: %d files protected, %d events (%d hints, %d scans), journal at seq %d",
            sum(self.known.count(r.name) for r in self.roots),
            s.events,
            s.hints,
            s.scans,
            self.repo.log.next_seq - 1,
        )
        for m in self.mongo:
            st = m.status
            log.info(
                "mongodb %s: %s since %s, %d events, %d documents copied%s%s",
                m.target.name,
                st.state,
                time.strftime("%H:%M:%S", time.localtime(st.since)),
                st.events,
                st.documents_copied,
                f", last error: {st.last_error}" if st.last_error else "",
                f", ALERT: {st.alerts[-1]}" if st.alerts else "",
            )

    async def _every(self, seconds: float, stop: asyncio.Event, job: Callable[[], object]) -> None:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), seconds)
            except TimeoutError:
                result = job()
                if asyncio.iscoroutine(result):
                    await result


async def _until(stop: asyncio.Event, waiting: Awaitable[Hint]) -> Hint | None:
    """The awaited hint, or None once ``stop`` is set first."""
    get = asyncio.ensure_future(waiting)
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({get, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if get in done:
        stopped.cancel()
        return get.result()
    get.cancel()
    return None


def install_signal_handlers(stop: asyncio.Event) -> None:
    """SIGINT and SIGTERM ask for a graceful stop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
