"""Endpoints that change backups: create and verify (jobs), delete (at once), jobs' status."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from compaction.backup_maker import SCOPES, Scope
from compaction.backups import FULL, INCREMENTAL
from hindsight.api.auth import TOKEN, require
from hindsight.api.context import CONTEXT, JOBS
from hindsight.api.errors import ApiError
from hindsight.api.jobs import Progress
from hindsight.api.validation import body_of, boolean, choice, strings
from hindsight.backup_service import BackupService, create_result_dict, prune_dict, verify_dict
from hindsight.tokens import Permission
from hindsight.writer import as_writer

__all__ = ["add_routes"]


def add_routes(app: web.Application) -> None:
    """Register the endpoints that change backups, and the job status."""
    app.router.add_post("/api/backup/create", create)
    app.router.add_post("/api/backup/{id}/verify", verify)
    app.router.add_delete("/api/backup/{id}", delete)
    app.router.add_get("/api/jobs/{id}", job_status)


def _accepted(request: web.Request, job_id: str) -> web.Response:
    body = {"operation_id": job_id, "status": "queued", "status_url": f"/api/jobs/{job_id}"}
    return web.json_response(body, status=202)


@require(Permission.BACKUP)
async def create(request: web.Request) -> web.Response:
    """Take a backup (a job): ``{"type": "full"|"incremental", "scope": [...]}``."""
    fields = {"type": "full or incremental", "scope": f"a list of {', '.join(SCOPES)}"}
    body = await body_of(request, fields)
    type_ = choice(body, "type", (FULL, INCREMENTAL), FULL)
    scope = Scope(strings(body, "scope", SCOPES, SCOPES))
    context = request.app[CONTEXT]

    def work(progress: Progress) -> dict[str, Any]:
        def local(service: BackupService) -> dict[str, Any]:
            done = [0]

            def counted(n: int) -> None:
                done[0] += n
                progress({"rows": done[0]})

            return create_result_dict(service.create(type_, scope, progress=counted))

        request_ = {"type": type_, "scope": list(scope.parts)}
        return as_writer(context.config, context.key_file, "backup", request_, local)

    job = request.app[JOBS].submit("backup", "", request[TOKEN].name, work)
    return _accepted(request, job.id)


@require(Permission.BACKUP)
async def verify(request: web.Request) -> web.Response:
    """Verify one backup (a job): ``{"read_data": true}`` also decodes and re-hashes."""
    body = await body_of(request, {"read_data": "true or false"})
    read_data, backup_id = boolean(body, "read_data"), request.match_info["id"]
    context = request.app[CONTEXT]
    await context.run(lambda repo: BackupService(context.config, repo).get(backup_id))  # 404 now

    def work(progress: Progress) -> dict[str, Any]:
        def checked(repo: Any) -> dict[str, Any]:
            done = [0]

            def counted(n: int) -> None:
                done[0] += n
                progress({"items": done[0]})

            service = BackupService(context.config, repo)
            return verify_dict(service.verify(backup_id, read_data=read_data, progress=counted))

        with context.repository() as repo:
            return checked(repo)

    job = request.app[JOBS].submit("verify", "", request[TOKEN].name, work)
    return _accepted(request, job.id)


@require(Permission.DELETE)
async def delete(request: web.Request) -> web.Response:
    """Delete one backup and what only it needed; ``?force=true``, ``?dry_run=true``."""
    backup_id, query = request.match_info["id"], request.query
    force, dry_run = boolean(query, "force"), boolean(query, "dry_run")
    context = request.app[CONTEXT]
    await context.run(lambda repo: BackupService(context.config, repo).get(backup_id))  # 404 now
    args = {"backup_id": backup_id, "force": force, "dry_run": dry_run}

    def deleted() -> dict[str, Any]:
        def local(service: BackupService) -> dict[str, Any]:
            return prune_dict(service.delete(backup_id, force=force, dry_run=dry_run))

        return as_writer(context.config, context.key_file, "delete", args, local)

    return web.json_response(await asyncio.to_thread(deleted))


async def job_status(request: web.Request) -> web.Response:
    """A job's state, progress and, once it ended, result or error."""
    job = request.app[JOBS].jobs.get(request.match_info["id"])
    if job is None:
        raise ApiError(404, "not_found", f"no job {request.match_info['id']!r} on this server")
    return web.json_response(job.as_dict())
