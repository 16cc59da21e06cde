"""Every API error as JSON ``{"error": {"status", "code", "message"}}``, never a traceback.

Hindsight's own errors map to the status a client can act on; anything else is a bug:
logged with its traceback, answered with a plain 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from journal.errors import (
    AuthError,
    ConfigError,
    CorruptionError,
    HindsightError,
    NotFound,
    RepositoryError,
    SourceUnavailable,
)

__all__ = ["ApiError", "error_middleware", "error_response"]

log = logging.getLogger("hindsight.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATUS_OF: tuple[tuple[type[HindsightError], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (ConfigError, 400, "bad_request"),
    (AuthError, 503, "key_needed"),  # the server's key, not the client's token
    (CorruptionError, 500, "corrupt_repository"),
    (SourceUnavailable, 503, "source_unavailable"),
    (RepositoryError, 503, "repository_unavailable"),
)


class ApiError(Exception):
    """An error answered as it is: ``status``, a short ``code`` and a message for people."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {"error": {"status": status, "code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into a JSON error response."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
        return error_response(exc.status, _code(exc.status), exc.reason, kept)
    except HindsightError as exc:
        for kind, status, code in STATUS_OF:
            if isinstance(exc, kind):
                return error_response(status, code, str(exc))
        return error_response(500, "error", str(exc))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal_error", "internal error; see the server's log")


def _code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        413: "request_too_large",
        429: "rate_limited",
    }.get(status, "error")
