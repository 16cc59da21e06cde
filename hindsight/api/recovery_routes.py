"""Recovery endpoints: scan (a job the request waits for), preview, and restore (a dry run is
answered at once; a real one is a job, one at a time per destination)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from hindsight.api.auth import TOKEN, check, require
from hindsight.api.context import CONTEXT, JOBS
from hindsight.api.errors import ApiError
from hindsight.api.jobs import Progress
from hindsight.api.validation import body_of, boolean, text, texts
from hindsight.restore_request import STRATEGIES, RestoreRequest, open_service
from hindsight.scan_service import ScanService
from hindsight.tokens import Permission
from hindsight.wiring import open_repository
from query.scan import SOURCES

__all__ = ["add_routes"]

SCAN_WAIT_S = 300  # a scan request waits this long for its job before answering 202
RESTORE_FIELDS = {
    "backup_id": "a backup id (or give at)",
    "at": "a moment: ISO-8601, epoch seconds or '2 hours ago'",
    "to": "a directory: restore there instead of in place",
    "selective": "a list of roots, filesystem, config, mongodb, deployments, collections",
    "scope": "the same as selective (the brief's name)",
    "paths": "a list of globs",
    "keys": "a list of document _ids (extended JSON)",
    "to_db": "a database name",
    "to_collection": "a collection name",
    "conflict": "skip, overwrite, rename or merge",
    "dry_run": "true (default: recovery.dry_run_by_default) or false",
    "no_rollback": "true or false",
}


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/recovery/scan", scan)
    app.router.add_get("/api/recovery/preview", preview)
    app.router.add_post("/api/recovery/restore", restore)


async def scan(request: web.Request) -> web.Response:
    """Scan for lost or corrupted data (``?source=``, repeatable; ``?deep=true``): the Scan
    Result, or 202 with the job when it takes longer than ``SCAN_WAIT_S`` (or ``?wait=false``)."""
    query = request.query
    sources = query.getall("source", [])
    if any(s not in SOURCES for s in sources):
        raise ApiError(400, "bad_request", f"source must be one of {', '.join(SOURCES)}")
    deep, wait = boolean(query, "deep"), boolean(query, "wait", True)
    context = request.app[CONTEXT]

    def work(progress: Progress) -> dict[str, Any]:
        def hashed(done: int, total: int) -> None:
            progress({"hashed": done, "total": total})

        repo = open_repository(context.config, key_file=context.key_file)
        with ScanService(context.config, repo) as service:
            return service.scan(sources, deep=deep, progress=hashed).to_dict()

    job = request.app[JOBS].submit("scan", "", request[TOKEN].name, work)
    if wait:
        ended = await request.app[JOBS].ended(job.id, SCAN_WAIT_S)
        if ended.status == "completed":
            return web.json_response(ended.result)
        if ended.status == "failed":
            raise ApiError(500, "scan_failed", ended.error or "the scan failed")
    body = {"operation_id": job.id, "status": job.status, "status_url": f"/api/jobs/{job.id}"}
    return web.json_response(body, status=202)


async def preview(request: web.Request) -> web.Response:
    """What a restore would do, per item, with counts and sizes (query: as the restore body;
    lists repeat the key)."""
    query = request.query
    unknown = sorted(set(query) - set(RESTORE_FIELDS))
    if unknown:
        raise ApiError(400, "bad_request", f"unknown parameter {unknown[0]!r}")
    fields = {
        k: query.getall(k) if k in ("selective", "paths", "keys") else query[k] for k in query
    }
    restore_request = _request(fields)
    context = request.app[CONTEXT]

    def planned() -> dict[str, Any]:
        with open_service(context.config, context.key_file) as service:
            return restore_request.plan(service)[1]

    return web.json_response(await asyncio.to_thread(planned))


@require(Permission.DRY_RUN)
async def restore(request: web.Request) -> web.Response:
    """Restore: a dry run answers the plan at once; a real restore (admin) is a job."""
    body = await body_of(request, RESTORE_FIELDS)
    restore_request = _request(body)
    context = request.app[CONTEXT]
    dry_run = boolean(body, "dry_run", context.config.recovery.dry_run_by_default)
    if not dry_run:
        check(request[TOKEN].role, Permission.RESTORE)
    restore_request.target()  # a bad target is a 400 now, not a failed job later
    restore_request.strategy(context.config)

    if dry_run:

        def planned() -> dict[str, Any]:
            with open_service(context.config, context.key_file) as service:
                return restore_request.plan(service)[1] | {"dry_run": True}

        return web.json_response(await asyncio.to_thread(planned))

    def work(progress: Progress) -> dict[str, Any]:
        capture = restore_request.to is None
        with open_service(
            context.config, context.key_file, writable=True, capture=capture
        ) as service:
            plan, report = restore_request.plan(service)
            total, done = restore_request.total(service, plan), [0]

            def counted(n: int) -> None:
                done[0] += n
                progress({"items": done[0], "total": total})

            return restore_request.run(service, plan, report, counted)

    where = str(restore_request.to) if restore_request.to else "in place"
    job = request.app[JOBS].submit("restore", where, request[TOKEN].name, work)
    body = {"operation_id": job.id, "status": job.status, "status_url": f"/api/jobs/{job.id}"}
    return web.json_response(body, status=202)


def _request(body: dict[str, Any]) -> RestoreRequest:
    """A restore request from a body or query; 400 names a malformed field."""
    conflict = text(body, "conflict")
    if conflict is not None and (conflict not in STRATEGIES or conflict == "prompt"):
        raise ApiError(400, "bad_request", "conflict must be one of skip, overwrite, rename, merge")
    to = text(body, "to")
    if "scope" in body and "selective" in body:
        raise ApiError(400, "bad_request", "give selective or scope, not both")
    return RestoreRequest(
        backup_id=text(body, "backup_id"),
        at=text(body, "at"),
        to=Path(to) if to else None,
        selective=texts(body, "scope" if "scope" in body else "selective"),
        paths=texts(body, "paths"),
        keys=texts(body, "keys"),
        to_db=text(body, "to_db"),
        to_collection=text(body, "to_collection"),
        conflict=conflict,
        no_rollback=boolean(body, "no_rollback"),
    )
