"""The API's entries in the audit trail: every request that acts (POST, DELETE) and every
one refused for its token (401, 403), with the token's name, the route and the outcome.

Reads are not recorded (a monitoring system polls them); see ``hindsight.cli.audited``.
"""

from __future__ import annotations

import logging

from aiohttp import web

from hindsight.api.auth import TOKEN
from hindsight.api.context import CONTEXT
from hindsight.api.errors import Handler
from hindsight.audit import audit_log
from journal.errors import HindsightError
from journal.repository import Repository

__all__ = ["trail_middleware"]

log = logging.getLogger("hindsight.api")

ACTING = frozenset({"POST", "DELETE", "PUT", "PATCH"})


@web.middleware
async def trail_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record the request after it is answered, if it acted or was refused."""
    response = await handler(request)
    status = response.status
    if request.method not in ACTING and status not in (401, 403):
        return response
    outcome = "denied" if status in (401, 403) else "ok" if status < 400 else "failed"
    token = request.get(TOKEN)
    resource = request.match_info.route.resource
    action = f"{request.method} {resource.canonical if resource else request.path}"
    details = {"status": status}
    target = request.match_info.get("id", "")

    def append(repo: Repository) -> None:
        audit_log(repo).append(
            actor=f"token:{token.name}" if token else f"anonymous@{request.remote}",
            action=action, target=target, outcome=outcome, details=details,
        )  # fmt: skip

    try:
        await request.app[CONTEXT].run(append)
    except (HindsightError, OSError) as exc:
        log.warning("the audit trail could not record %s: %s", action, exc)
    return response
