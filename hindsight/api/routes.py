"""The read endpoints: health, status, backups, recoveries and metrics.

Each answers JSON (``/metrics`` Prometheus text); repository work runs in a thread on a
read-only opening of the repository (``ApiContext.run``).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web

from hindsight.api.context import CONTEXT, ApiContext
from hindsight.api.errors import ApiError
from hindsight.api.metrics import Metrics
from hindsight.backup_service import BackupService
from journal.repository import Repository
from restore.operations import OperationCatalog

__all__ = ["METRICS", "add_routes"]

log = logging.getLogger("hindsight.api")

METRICS = web.AppKey("metrics", Metrics)
OP_ID = re.compile(r"recover_\d{8}_\d{6}")


def add_routes(app: web.Application) -> None:
    """Register the read endpoints."""
    app.router.add_get("/health", health)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/backup/list", backup_list)
    app.router.add_get("/api/backup/storage", backup_storage)
    app.router.add_get("/api/backup/{id}", backup_show)
    app.router.add_get("/api/recovery/history", recovery_history)
    app.router.add_get("/api/recovery/status/{id}", recovery_status)
    app.router.add_get("/metrics", metrics)


def _context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


async def health(request: web.Request) -> web.Response:
    """Liveness and readiness: the server answers, and the repository opens."""
    context = _context(request)
    try:
        await context.run(lambda repo: repo.id)
    except Exception as exc:  # any failure means not ready; the reason stays in the log
        log.warning("health check: the repository does not open: %s", exc)
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


async def status(request: web.Request) -> web.Response:
    """The repository's status (as ``hindsight status --json``)."""
    context = _context(request)
    body = await context.status_json()
    return web.Response(body=body, content_type="application/json")


async def backup_list(request: web.Request) -> web.Response:
    """Every backup's metadata, oldest first; ``?filter=`` as ``backup list --filter``."""
    context, filters = _context(request), request.query.getall("filter", [])

    def listed(repo: Repository) -> list[dict[str, Any]]:
        return [b.metadata for b in BackupService(context.config, repo).find(filters)]

    return web.json_response(await context.run(listed))


async def backup_storage(request: web.Request) -> web.Response:
    """Bytes by kind, compression and dedup ratios, and the quota."""
    context = _context(request)

    def measured(repo: Repository) -> dict[str, object]:
        return BackupService(context.config, repo).storage().to_dict()

    return web.json_response(await context.run(measured))


async def backup_show(request: web.Request) -> web.Response:
    """One backup's metadata."""
    context, backup_id = _context(request), request.match_info["id"]

    def shown(repo: Repository) -> dict[str, Any]:
        return BackupService(context.config, repo).get(backup_id).metadata

    return web.json_response(await context.run(shown))


async def recovery_history(request: web.Request) -> web.Response:
    """Every recovery operation's record, oldest first."""

    def history(repo: Repository) -> list[dict[str, Any]]:
        catalog = _operations(repo)
        return [catalog.get(op_id).record for op_id in catalog.ids()]

    return web.json_response(await _context(request).run(history))


async def recovery_status(request: web.Request) -> web.Response:
    """One recovery operation's record."""
    op_id = request.match_info["id"]
    if not _valid_op_id(op_id):
        msg = f"{op_id!r} is not an operation id (recover_YYYYMMDD_HHMMSS)"
        raise ApiError(400, "bad_request", msg)
    record = await _context(request).run(lambda repo: _operations(repo).get(op_id).record)
    return web.json_response(record)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics."""
    context = _context(request)
    collected = request.app[METRICS]
    report = await context.status()
    collected.observe(report)
    return collected.text()


def _operations(repo: Repository) -> OperationCatalog:
    return OperationCatalog(repo.root, repo.store, repo.record_cipher)


def _valid_op_id(op_id: str) -> bool:
    return OP_ID.fullmatch(op_id) is not None
