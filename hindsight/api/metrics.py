"""``GET /metrics``: Prometheus text format (prometheus-client), one registry per server.

Request counts are kept as requests are answered; the repository's figures are read from
the (cached) status at each scrape.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from hindsight.api.errors import Handler
from hindsight.status_report import epoch_of

__all__ = ["Metrics"]

CAPTURING = frozenset({"streaming", "syncing", "watching"})


class Metrics:
    """The API's and the repository's metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hindsight_api_requests",
            "API requests answered",
            ["route", "method", "status"],
            registry=r,
        )
        self.journal_events = Gauge("hindsight_journal_events", "Events in the journal", registry=r)
        self.journal_bytes = Gauge("hindsight_journal_bytes", "Bytes of journal", registry=r)
        self.backups = Gauge("hindsight_backups", "Backups in the catalog", registry=r)
        self.backup_age = Gauge(
            "hindsight_backup_age_seconds",
            "Age of the newest backup of each type",
            ["type"],
            registry=r,
        )
        self.storage_bytes = Gauge(
            "hindsight_storage_bytes", "Bytes the repository uses", registry=r
        )
        self.quota_used = Gauge(
            "hindsight_quota_used_ratio",
            "Share of the storage quota used (0 without one)",
            registry=r,
        )
        self.daemon_up = Gauge("hindsight_daemon_up", "1 while the daemon runs", registry=r)
        self.capture_up = Gauge(
            "hindsight_capture_up", "1 while a source is captured", ["source", "name"], registry=r
        )
        self.capture_events = Gauge(
            "hindsight_capture_events",
            "Events captured from a source since the daemon started",
            ["source", "name"],
            registry=r,
        )
        self.capture_lag = Gauge(
            "hindsight_capture_lag_seconds",
            "Worst time from a change to its journal entry in the last status interval",
            ["source", "name"],
            registry=r,
        )
        self.job_failed = Gauge(
            "hindsight_job_last_failed",
            "1 when a scheduled job's last run failed",
            ["job"],
            registry=r,
        )
        self.job_duration = Gauge(
            "hindsight_job_last_duration_seconds",
            "How long a scheduled job's last run took (full and incremental: backup duration)",
            ["job"],
            registry=r,
        )
        self.restore_failed = Gauge(
            "hindsight_last_restore_failed", "1 when the newest restore failed", registry=r
        )
        self.scan_findings = Gauge(
            "hindsight_scan_findings", "Findings of the newest scan", registry=r
        )
        self.restores = Gauge(
            "hindsight_restores", "Recovery operations by status", ["status"], registry=r
        )
        self.alerts = Gauge(
            "hindsight_alerts_open", "Alert conditions that hold now", ["severity"], registry=r
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count every answered request by route (its pattern, not the path) and status."""
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        response = await handler(request)
        self.requests.labels(name, request.method, str(response.status)).inc()
        return response

    def observe(self, status: dict[str, Any]) -> None:
        """Set the gauges from a status report."""
        journal, backups = status["journal"], status["backups"]
        self.journal_events.set(journal["events"])
        self.journal_bytes.set(journal["bytes"])
        self.backups.set(backups["count"])
        for type_, meta in backups["newest"].items():
            self.backup_age.labels(type_).set(max(0, meta["age_s"]))
        storage = backups["storage"]
        self.storage_bytes.set(storage["total_bytes"])
        self.quota_used.set(storage["quota_used"] if storage["quota_bytes"] else 0.0)
        self.daemon_up.set(1 if status["daemon"]["running"] else 0)
        self.capture_up.clear()
        self.capture_events.clear()
        self.capture_lag.clear()
        for source in status["capture"]:
            labels = (source["source"], source["name"])
            self.capture_up.labels(*labels).set(source["state"] in CAPTURING)
            if "events" in source:
                self.capture_events.labels(*labels).set(source["events"])
            if "lag_s" in source:
                self.capture_lag.labels(*labels).set(source["lag_s"])
        self.job_failed.clear()
        self.job_duration.clear()
        for job in status["jobs"]:
            last = job.get("last") or {}
            self.job_failed.labels(job["job"]).set(last.get("result") == "failed")
            if last.get("started") and last.get("ended"):
                took = epoch_of(last["ended"]) - epoch_of(last["started"])
                self.job_duration.labels(job["job"]).set(max(0.0, took))
        last_restore = status["last_recovery"] or {}
        self.restore_failed.set(last_restore.get("status") == "failed")
        self.scan_findings.set(status["scan_findings"] or 0)
        self.restores.clear()
        for state, count in status["recoveries"].items():
            self.restores.labels(state).set(count)
        self.alerts.clear()
        for severity in ("warning", "critical"):
            count = sum(a["severity"] == severity for a in status["alerts"])
            self.alerts.labels(severity).set(count)

    def text(self) -> web.Response:
        """The exposition."""
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response
