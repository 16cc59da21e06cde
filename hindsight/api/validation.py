"""Request bodies and query values checked before anything runs: a 400 names the field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hindsight.api.errors import ApiError

__all__ = ["body_of", "boolean", "choice", "strings", "text", "texts"]


async def body_of(request: web.Request, fields: Mapping[str, str]) -> dict[str, Any]:
    """The JSON object in the body (an empty body is ``{}``); 400 for anything else, or for
    a field not in ``fields`` (name -> what it is, for the message)."""
    if not request.body_exists:
        return {}
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_request", "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in fields.items()) or "none"
        raise ApiError(400, "bad_request", f"unknown field {unknown[0]!r}; fields: {known}")
    return body


def choice(body: Mapping[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = body.get(name, default)
    if value not in choices:
        raise ApiError(400, "bad_request", f"{name} must be one of {', '.join(choices)}")
    return str(value)


def boolean(body: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # from a query string
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ApiError(400, "bad_request", f"{name} must be true or false")
    return value


def strings(
    body: Mapping[str, Any], name: str, choices: tuple[str, ...], default: tuple[str, ...]
) -> tuple[str, ...]:
    value = body.get(name, list(default))
    if not isinstance(value, list) or not value or any(v not in choices for v in value):
        raise ApiError(400, "bad_request", f"{name} must be a non-empty list of {choices}")
    return tuple(value)


def text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise ApiError(400, "bad_request", f"{name} must be a non-empty string")
    return value


def texts(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ApiError(400, "bad_request", f"{name} must be a list of non-empty strings")
    return tuple(value)
