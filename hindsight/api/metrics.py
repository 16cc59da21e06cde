"""``GET /metrics``: Prometheus text format (prometheus-client), one registry per server.

Request counts are kept as requests are answered; the repository's figures are read from
the (cached) status at each scrape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

from hindsight.api.errors import Handler

__all__ = ["Metrics"]


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

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count every answered request by route (its pattern, not the path) and status."""
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        response = await handler(request)
        self.requests.labels(name, request.method, str(response.status)).inc()
        return response

    def observe(self, status: dict[str, Any], now: float) -> None:
        """Set the gauges from a status report."""
        journal, backups = status["journal"], status["backups"]
        self.journal_events.set(journal["events"])
        self.journal_bytes.set(journal["bytes"])
        self.backups.set(backups["count"])
        for type_, meta in backups["newest"].items():
            self.backup_age.labels(type_).set(max(0.0, now - _epoch(meta["timestamp"])))
        storage = backups["storage"]
        self.storage_bytes.set(storage["total_bytes"])
        self.quota_used.set(storage["quota_used"] if storage["quota_bytes"] else 0.0)

    def text(self) -> web.Response:
        """The exposition."""
        response = web.Response(body=generate_latest(self.registry))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()
