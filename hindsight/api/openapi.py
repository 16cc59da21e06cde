"""``GET /api/openapi.json``: the OpenAPI 3 description of this API, kept beside the routes.

Every status an operation can answer is listed (schemathesis checks that in ``make test``),
with the error body every failure shares. Bodies the repository shapes (status, backups,
plans) are described by their fixed keys and left open beyond them. The WebSocket
(``/api/ws``) is left out: OpenAPI 3.0 cannot describe one; docs/USER.md does.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from hindsight.api.recovery_routes import RESTORE_FIELDS
from query.scan import SOURCES

__all__ = ["add_routes", "document"]

OBJECT: dict[str, Any] = {"type": "object"}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string"},
                "message": {"type": "string"},
            },
        }
    },
}
ACCEPTED = {
    "type": "object",
    "required": ["operation_id", "status", "status_url"],
    "properties": {
        "operation_id": {"type": "string"},
        "status": {"type": "string"},
        "status_url": {"type": "string"},
    },
}
JOB = {
    "type": "object",
    "required": ["operation_id", "kind", "status", "created_at"],
    "properties": {
        "operation_id": {"type": "string"},
        "kind": {"type": "string", "enum": ["backup", "verify", "scan", "restore"]},
        "status": {"type": "string", "enum": ["queued", "running", "completed", "failed"]},
        "progress": OBJECT,
        "error": {"type": "string", "nullable": True},
        "created_at": {"type": "string"},
    },
}
BACKUP = {
    "type": "object",
    "required": ["backup_id", "type", "timestamp"],
    "properties": {
        "backup_id": {"type": "string"},
        "type": {"type": "string"},
        "timestamp": {"type": "string"},
    },
}
STATUS = {
    "type": "object",
    "required": ["repository", "journal", "backups", "jobs", "daemon", "alerts"],
    "properties": {
        "journal": OBJECT,
        "backups": OBJECT,
        "jobs": {"type": "array", "items": OBJECT},
        "daemon": {
            "type": "object",
            "required": ["running"],
            "properties": {"running": {"type": "boolean"}},
        },
        "capture": {"type": "array", "items": OBJECT},
        "alerts": {"type": "array", "items": OBJECT},
    },
}
PLAN = {
    "type": "object",
    "required": ["cut_seq", "counts", "bytes", "items"],
    "properties": {"items": {"type": "array", "items": OBJECT}},
}
RECORD = {
    "type": "object",
    "required": ["operation_id", "status"],
    "properties": {"operation_id": {"type": "string"}, "status": {"type": "string"}},
}
FAILURES = {
    "400": "a parameter or the body is malformed; the message names it",
    "401": "no token, or one unknown, revoked or expired",
    "403": "the token's role may not do this",
    "404": "no such item",
    "413": "the body is larger than [api] max_body_kib",
    "429": "the token's rate limit is reached (see Retry-After)",
    "503": "the repository or a source is unavailable, or the server lacks the key",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _operation(
    summary: str,
    answers: dict[str, tuple[dict[str, Any], str]],
    *,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    """One operation: its answers, then every failure it can give."""
    responses = {code: _json(schema, text) for code, (schema, text) in answers.items()}
    if not public:
        responses |= {code: _json(ERROR, text) for code, text in FAILURES.items()}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": body}},
        }
    if public:
        operation["security"] = []
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}  # fmt: skip


def _path_id(description: str) -> dict[str, Any]:
    return {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
            "description": description}  # fmt: skip


TEXT = {"type": "string", "minLength": 1}
TEXTS = {"type": "array", "items": {"type": "string", "minLength": 1}}
FILTERS = {
    "type": "array",
    "items": {"type": "string", "pattern": r"^(last_[0-9]{1,4}_days|type=(full|incremental))$"},
}
CONFLICT = {"type": "string", "enum": ["skip", "overwrite", "rename", "merge"]}
FLAG = {"type": "boolean"}
SCAN_SOURCES = {"type": "array", "items": {"type": "string", "enum": list(SOURCES)}}
RESTORE_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "not": {"required": ["scope", "selective"]},
    "properties": {
        name: (TEXTS if name in ("selective", "scope", "paths", "keys") else
               FLAG if name in ("dry_run", "no_rollback") else
               CONFLICT if name == "conflict" else TEXT)
        for name in RESTORE_FIELDS
    },
}  # fmt: skip


def document() -> dict[str, Any]:
    """The OpenAPI 3.0 document."""
    backup_id = _path_id("a backup id, as backup list gives them")
    preview_params = [
        _query(name, schema, text)
        for name, text in RESTORE_FIELDS.items()
        if (schema := RESTORE_BODY["properties"][name]) is not FLAG
    ]
    paths = {
        "/health": {"get": _operation(
            "liveness and readiness", {"200": (OBJECT, "ready"), "503": (OBJECT, "not ready")},
            public=True,
        )},
        "/api/status": {"get": _operation("the repository's status", {"200": (STATUS, "status")})},
        "/api/backup/list": {"get": _operation(
            "every backup, oldest first", {"200": ({"type": "array", "items": BACKUP}, "backups")},
            parameters=[_query("filter", FILTERS, "last_7_days, type=full|incremental")],
        )},
        "/api/backup/storage": {"get": _operation(
            "bytes by kind, ratios and the quota", {"200": (OBJECT, "storage")}
        )},
        "/api/backup/create": {"post": _operation(
            "take a backup (a job)", {"202": (ACCEPTED, "queued")},
            body={"type": "object", "additionalProperties": False, "properties": {
                "type": {"type": "string", "enum": ["full", "incremental"]},
                "scope": {"type": "array", "minItems": 1,
                          "items": {"type": "string", "enum": ["mongodb", "filesystem", "config"]}},
            }},
        )},
        "/api/backup/{id}": {
            "get": _operation("one backup's metadata", {"200": (BACKUP, "metadata")},
                              parameters=[backup_id]),
            "delete": _operation(
                "delete a backup and what only it needed", {"200": (OBJECT, "what was freed")},
                parameters=[backup_id, _query("force", FLAG, "also the newest full backup"),
                            _query("dry_run", FLAG, "only say what would go")],
            ),
        },
        "/api/backup/{id}/verify": {"post": _operation(
            "verify a backup (a job)", {"202": (ACCEPTED, "queued")}, parameters=[backup_id],
            body={"type": "object", "additionalProperties": False,
                  "properties": {"read_data": FLAG}},
        )},
        "/api/jobs/{id}": {"get": _operation(
            "a job's state and result", {"200": (JOB, "the job")},
            parameters=[_path_id("a job id, as a 202 answer gives it")],
        )},
        "/api/recovery/scan": {"get": _operation(
            "scan for lost or corrupted data",
            {"200": (OBJECT, "the Scan Result"), "202": (ACCEPTED, "still running")},
            parameters=[
                _query("source", SCAN_SOURCES, "sources to scan (default: all)"),
                _query("deep", FLAG, "hash every file"),
                _query("wait", FLAG, "wait for the result (default true)"),
            ],
        )},
        "/api/recovery/preview": {"get": _operation(
            "what a restore would do", {"200": (PLAN, "the plan")}, parameters=preview_params,
        )},
        "/api/recovery/restore": {"post": _operation(
            "restore (a dry run answers the plan; a real one is a job and needs admin)",
            {"200": (PLAN, "the dry run's plan"), "202": (ACCEPTED, "queued")},
            body=RESTORE_BODY,
        )},
        "/api/recovery/status/{id}": {"get": _operation(
            "one recovery operation's record", {"200": (RECORD, "the record")},
            parameters=[{**_path_id("an operation id: recover_YYYYMMDD_HHMMSS"),
                         "schema": {"type": "string", "pattern": r"^recover_[0-9]{8}_[0-9]{6}$"}}],
        )},
        "/api/recovery/history": {"get": _operation(
            "every recovery operation, oldest first",
            {"200": ({"type": "array", "items": RECORD}, "the records")},
        )},
        "/api/openapi.json": {"get": _operation("this document", {"200": (OBJECT, "OpenAPI 3")})},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {"description": "text format 0.0.4",
                        "content": {"text/plain": {"schema": TEXT}}},
                **{code: _json(ERROR, text) for code, text in FAILURES.items()},
            },
        }},
    }  # fmt: skip
    return {
        "openapi": "3.0.3",
        "info": {"title": "Hindsight", "version": "1",
                 "description": "Continuous data protection: status, backups and recovery."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }  # fmt: skip


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/openapi.json", openapi)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI document (it needs a token, as every endpoint but /health)."""
    return web.json_response(document())
