"""Bearer tokens, roles and rate limits: who may call what.

Every route but ``/health`` needs ``Authorization: Bearer <token>`` (401 without one, or with
one that is unknown, revoked or expired); the route's permission must be in the token's role
(403 otherwise); each token has its own rate limit (429 with ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from hindsight.api.context import CONTEXT
from hindsight.api.errors import ApiError, Handler
from hindsight.tokens import Permission, Role, Token, role_allows

__all__ = ["PUBLIC", "TOKEN", "auth_middleware", "check", "permission_of", "require"]

PUBLIC = frozenset({"/health"})
TOKEN = web.RequestKey("token", Token)  # the request's authenticated token
PERMISSION = "hindsight_permission"  # a handler attribute: what calling it needs
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="hindsight"'}


def permission_of(handler: object) -> Permission:
    """What a handler needs (``READ`` unless marked with ``require``)."""
    return getattr(handler, PERMISSION, Permission.READ)


def require(permission: Permission) -> Callable[[Handler], Handler]:
    """Mark a handler as needing ``permission``."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, PERMISSION, permission)
        return handler

    return mark


def check(role: Role, permission: Permission) -> None:
    """403 unless ``role`` has ``permission``, naming the role that would."""
    if not role_allows(role, permission):
        needed = next(r for r in Role if role_allows(r, permission))
        who = "an admin" if needed is Role.ADMIN else f"an {needed.value} or admin"
        msg = f"a {role.value} token may not do this; it needs {who} token"
        raise ApiError(403, "forbidden", msg)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, rate-limit and authorise every request but the public ones."""
    if request.path in PUBLIC:
        return await handler(request)
    context = request.app[CONTEXT]
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        msg = "send Authorization: Bearer <token>; create one with `hindsight token create`"
        raise ApiError(401, "unauthorized", msg, CHALLENGE)
    token = context.tokens.authenticate(presented.strip())
    if token is None:
        raise ApiError(401, "unauthorized", "the token is unknown, revoked or expired", CHALLENGE)
    wait = context.limiter.take(token.id)
    if wait:
        msg = f"rate limit reached for token {token.name}; retry in {wait:.0f} s"
        raise ApiError(429, "rate_limited", msg, {"Retry-After": f"{wait:.0f}"})
    request[TOKEN] = token
    check(token.role, permission_of(request.match_info.route.handler))
    return await handler(request)
