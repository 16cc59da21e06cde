"""``GET /api/ws``: a WebSocket of job events, for one operation (``?operation=ID``) or all.

The current state of the subscribed job is sent first, so a client that connects late still
sees it end; the socket closes after that job's last event. Authentication is the same
bearer token as every endpoint (a browser client can use a proxy that adds it).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from hindsight.api.context import JOBS
from hindsight.api.errors import ApiError

__all__ = ["add_routes"]

ENDED = ("completed", "failed")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/ws", live)


async def live(request: web.Request) -> web.WebSocketResponse:
    """Stream job events until the subscribed job ends or the client leaves."""
    jobs, wanted = request.app[JOBS], request.query.get("operation")
    job = jobs.jobs.get(wanted) if wanted else None
    if wanted and job is None:
        raise ApiError(404, "not_found", f"no job {wanted!r} on this server")
    socket = web.WebSocketResponse(heartbeat=30)
    await socket.prepare(request)
    events = jobs.events(wanted)
    reader = asyncio.create_task(_until_closed(socket))
    try:
        if job is not None:
            await socket.send_json(job.as_dict())
            if job.status in ENDED:
                return socket
        async for event in events:
            if reader.done():
                break
            await socket.send_json(event)
            if wanted and event["status"] in ENDED:
                break
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await events.aclose()  # type: ignore[attr-defined]
        await socket.close()
    return socket


async def _until_closed(socket: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends until it closes."""
    async for message in socket:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
