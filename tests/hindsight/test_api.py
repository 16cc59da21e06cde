"""The HTTP API over real HTTP on 127.0.0.1: authentication, roles, limits, read endpoints."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from compaction.backup_maker import Scope
from hindsight.api.app import make_app
from hindsight.api.auth import check
from hindsight.api.context import ApiContext, ApiSettings
from hindsight.api.errors import ApiError
from hindsight.audit import audit_log
from hindsight.backup_service import BackupService
from hindsight.cli.main import main
from hindsight.config import Config, load_config
from hindsight.tokens import Permission, Role, TokenStore
from hindsight.wiring import open_repository
from tests.daemon_process import running_daemon
from tests.hindsight.test_serve import free_port

READ_ENDPOINTS = [
    "/api/status",
    "/api/backup/list",
    "/api/backup/storage",
    "/api/backup/{backup}",
    "/api/recovery/history",
    "/metrics",
]


@dataclass
class Api:
    """A served API, a client, a backup id and a token per role."""

    url: str
    http: aiohttp.ClientSession
    backup: str
    tokens: dict[Role, str]

    async def get(self, path: str, role: Role | None = Role.VIEWER) -> aiohttp.ClientResponse:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        return await self.http.get(self.url + path.format(backup=self.backup), headers=headers)


def protected_app(workdir: Path) -> tuple[Config, str]:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(app)]) == 0
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config, writable=True) as repo:
        backup = BackupService(config, repo).create("full", Scope()).backup.id
    return config, backup


async def serving(config: Config, backup: str, settings: ApiSettings) -> AsyncIterator[Api]:
    store = TokenStore(config.storage.repository)
    tokens = {role: store.create(role)[1] for role in Role}
    server = TestServer(make_app(ApiContext(config, settings)), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(str(server.make_url("")), http, backup, tokens)
    finally:
        await server.close()


@pytest.fixture
async def api(workdir: Path) -> AsyncIterator[Api]:
    config, backup = protected_app(workdir)
    async for served in serving(config, backup, ApiSettings(rate_limit_per_minute=0)):
        yield served


async def test_health_needs_no_token(api: Api) -> None:
    response = await api.get("/health", role=None)
    assert response.status == 200 and await response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", READ_ENDPOINTS)
async def test_every_endpoint_but_health_needs_a_valid_token(api: Api, path: str) -> None:
    missing = await api.get(path, role=None)
    assert missing.status == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "hindsight token create" in (await missing.json())["error"]["message"]
    url = api.url + path.format(backup=api.backup)
    for bad in ("Bearer hs_00000000_" + "x" * 43, "Basic dXNlcjpwYXNz", "Bearer "):
        wrong = await api.http.get(url, headers={"Authorization": bad})
        assert wrong.status == 401, bad
    assert (await api.get(path)).status == 200


async def test_a_revoked_token_is_refused(api: Api, workdir: Path) -> None:
    config = load_config(workdir / "hindsight.toml")
    token = TokenStore(config.storage.repository).authenticate(api.tokens[Role.VIEWER])
    assert token is not None
    TokenStore(config.storage.repository).revoke(token.id)
    assert (await api.get("/api/status")).status == 401


async def test_status_and_backups_read_the_repository(api: Api) -> None:
    status = await (await api.get("/api/status")).json()
    assert status["backups"]["count"] == 1 and status["journal"]["events"] > 0
    assert 0 <= status["backups"]["newest"]["full"]["age_s"] < 600
    listed = await (await api.get("/api/backup/list")).json()
    assert [b["backup_id"] for b in listed] == [api.backup]
    shown = await (await api.get("/api/backup/{backup}")).json()
    assert shown["backup_id"] == api.backup and shown["type"] == "full"
    storage = await (await api.get("/api/backup/storage")).json()
    assert storage["total_bytes"] > 0
    assert await (await api.get("/api/recovery/history")).json() == []


async def test_unknown_items_and_bad_ids_are_json_errors(api: Api) -> None:
    missing = await api.get("/api/backup/backup_20000101_000000")
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "not_found"
    gone = await api.get("/api/recovery/status/recover_20000101_000000")
    assert gone.status == 404
    bad = await api.get("/api/recovery/status/..%2F..%2Fetc")
    assert bad.status in (400, 404) and "error" in await bad.json()
    nowhere = await api.get("/api/nothing-here")
    assert nowhere.status == 404 and (await nowhere.json())["error"]["code"] == "not_found"


async def test_metrics_are_valid_prometheus_text_with_request_counts(api: Api) -> None:
    await api.get("/api/status")
    await api.get("/api/backup/backup_20000101_000000")
    response = await api.get("/metrics")
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    requests = {
        (s.labels["route"], s.labels["status"]): s.value
        for s in families["hindsight_api_requests"].samples
        if s.name == "hindsight_api_requests_total"
    }
    assert requests[("/api/status", "200")] == 1
    assert requests[("/api/backup/{id}", "404")] == 1, "by route pattern, not path"
    assert families["hindsight_backups"].samples[0].value == 1
    ages = {s.labels["type"]: s.value for s in families["hindsight_backup_age_seconds"].samples}
    assert 0 <= ages["full"] < 600
    assert families["hindsight_daemon_up"].samples[0].value == 0, "no daemon in this test"
    alerts = {s.labels["severity"]: s.value for s in families["hindsight_alerts_open"].samples}
    assert alerts["critical"] >= 1, "capture is stopped: no daemon runs"


async def test_each_token_has_its_own_rate_limit(workdir: Path) -> None:
    config, backup = protected_app(workdir)
    async for api in serving(config, backup, ApiSettings(rate_limit_per_minute=3)):
        answers = [(await api.get("/api/backup/list")).status for _ in range(3)]
        limited = await api.get("/api/backup/list")
        other = await api.get("/api/backup/list", role=Role.ADMIN)
    assert answers == [200, 200, 200]
    assert limited.status == 429 and int(limited.headers["Retry-After"]) >= 1
    assert other.status == 200, "another token is not limited by this one's requests"


@pytest.mark.parametrize(
    ("role", "permission", "allowed"),
    [
        (Role.VIEWER, Permission.READ, True),
        (Role.VIEWER, Permission.BACKUP, False),
        (Role.OPERATOR, Permission.DRY_RUN, True),
        (Role.OPERATOR, Permission.RESTORE, False),
        (Role.ADMIN, Permission.DELETE, True),
    ],
)
def test_a_role_without_the_permission_gets_403_naming_the_role_needed(
    role: Role, permission: Permission, allowed: bool
) -> None:
    if allowed:
        check(role, permission)
        return
    with pytest.raises(ApiError) as refused:
        check(role, permission)
    needed = "an operator or admin" if permission is Permission.BACKUP else "an admin"
    assert refused.value.status == 403
    assert f"a {role.value} token may not do this; it needs {needed} token" == refused.value.message


async def follow(api: Api, operation: str, role: Role = Role.OPERATOR) -> list[dict]:  # type: ignore[type-arg]
    """Every event of ``operation`` over the WebSocket, until it ends."""
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    url = f"{api.url}/api/ws?operation={operation}"
    async with api.http.ws_connect(url, headers=headers) as socket:
        return [message.json() async for message in socket]


async def post(api: Api, path: str, role: Role, body: object = None) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {api.tokens[role]}"}
    return await api.http.post(api.url + path.format(backup=api.backup), json=body, headers=headers)


async def test_a_backup_job_is_followed_to_its_end_over_the_websocket(api: Api) -> None:
    accepted = await post(api, "/api/backup/create", Role.OPERATOR, {"type": "incremental"})
    assert accepted.status == 202
    operation = (await accepted.json())["operation_id"]
    events = await follow(api, operation)
    assert events[-1]["status"] == "completed", events[-1]
    assert events[-1]["result"]["backup"]["type"] == "incremental"
    assert events[-1]["requested_by"].startswith("token-")
    job = await (await api.get(f"/api/jobs/{operation}")).json()
    assert job == events[-1]
    listed = await (await api.get("/api/backup/list")).json()
    assert [b["type"] for b in listed] == ["full", "incremental"]


async def test_verify_is_a_job_and_delete_needs_an_admin(api: Api) -> None:
    accepted = await post(api, "/api/backup/{backup}/verify", Role.OPERATOR, {"read_data": True})
    assert accepted.status == 202
    events = await follow(api, (await accepted.json())["operation_id"])
    assert events[-1]["status"] == "completed" and events[-1]["result"]["ok"] is True
    url = f"{api.url}/api/backup/{api.backup}?dry_run=true"
    for role, expected in ((Role.VIEWER, 403), (Role.OPERATOR, 403), (Role.ADMIN, 200)):
        headers = {"Authorization": f"Bearer {api.tokens[role]}"}
        assert (await api.http.delete(url, headers=headers)).status == expected, role
    assert len(await (await api.get("/api/backup/list")).json()) == 1, "a dry run deletes nothing"


async def test_a_viewer_may_not_start_jobs(api: Api) -> None:
    for path in ("/api/backup/create", "/api/backup/{backup}/verify"):
        refused = await post(api, path, Role.VIEWER, {})
        assert refused.status == 403, path
        assert "needs an operator or admin token" in (await refused.json())["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "weekly"}, "type must be one of full, incremental"),
        ({"kind": "full"}, "unknown field 'kind'"),
        ({"scope": ["everything"]}, "scope must be a non-empty list"),
        ([1, 2], "the body must be a JSON object"),
    ],
)
async def test_bad_requests_say_which_field_is_wrong(api: Api, body: object, message: str) -> None:
    refused = await post(api, "/api/backup/create", Role.OPERATOR, body)
    assert refused.status == 400
    assert message in (await refused.json())["error"]["message"]


async def test_bodies_are_size_limited(workdir: Path) -> None:
    config, backup = protected_app(workdir)
    settings = ApiSettings(rate_limit_per_minute=0, max_body_bytes=1000)
    async for api in serving(config, backup, settings):
        headers = {"Authorization": f"Bearer {api.tokens[Role.OPERATOR]}"}
        huge = '{"type": "full", "scope": ["' + "x" * 5000 + '"]}'
        refused = await api.http.post(api.url + "/api/backup/create", data=huge, headers=headers)
        assert (
            refused.status == 413 and (await refused.json())["error"]["code"] == "request_too_large"
        )


async def test_scan_answers_the_scan_result(api: Api) -> None:
    response = await api.get("/api/recovery/scan?source=filesystem")
    assert response.status == 200
    result = await response.json()
    assert result["scan_id"] and "findings" in result
    bad = await api.get("/api/recovery/scan?source=tape")
    assert bad.status == 400 and "source must be one of" in (await bad.json())["error"]["message"]


async def test_preview_and_dry_run_write_nothing_and_a_real_restore_needs_an_admin(
    api: Api, workdir: Path
) -> None:
    live = workdir / "app/config.py"
    live.write_text("DEBUG = True  # the bad change\n")
    preview = await api.get(f"/api/recovery/preview?backup_id={api.backup}")
    plan = await preview.json()
    assert preview.status == 200 and plan["counts"]["conflict"] == 1, plan
    body = {"backup_id": api.backup, "scope": ["app"], "conflict": "overwrite", "dry_run": True}
    dry = await post(api, "/api/recovery/restore", Role.OPERATOR, body)
    assert dry.status == 200 and (await dry.json())["dry_run"] is True
    assert live.read_text() == "DEBUG = True  # the bad change\n", "a dry run writes nothing"
    real = body | {"dry_run": False}
    refused = await post(api, "/api/recovery/restore", Role.OPERATOR, real)
    assert refused.status == 403 and "admin" in (await refused.json())["error"]["message"]
    accepted = await post(api, "/api/recovery/restore", Role.ADMIN, real)
    assert accepted.status == 202
    events = await follow(api, (await accepted.json())["operation_id"], Role.ADMIN)
    assert events[-1]["status"] == "completed", events[-1]
    assert live.read_text() == "DEBUG = False\n"
    operation = events[-1]["result"]["operation_id"]
    record = await (await api.get(f"/api/recovery/status/{operation}")).json()
    assert record["status"] == "completed"
    for _ in range(100):  # the status is at most a second old, plus its rebuild
        recoveries = (await (await api.get("/api/status")).json())["recoveries"]
        if recoveries:
            break
        await asyncio.sleep(0.1)
    assert recoveries == {"completed": 1}
    assert [r["operation_id"] for r in await (await api.get("/api/recovery/history")).json()] == [
        operation
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"dry_run": True}, "give either a BACKUP_ID or --at TIME"),
        ({"backup_id": "x", "at": "1h", "dry_run": True}, "give either a BACKUP_ID"),
        ({"backup_id": "x", "conflict": "prompt", "dry_run": True}, "conflict must be one of"),
        ({"backup_id": "x", "paths": "*.json", "dry_run": True}, "paths must be a list"),
        ({"backup_id": "x", "wipe": True}, "unknown field 'wipe'"),
    ],
)
async def test_bad_restore_requests_are_refused_before_anything_runs(
    api: Api,
    body: dict,
    message: str,  # type: ignore[type-arg]
) -> None:
    refused = await post(api, "/api/recovery/restore", Role.ADMIN, body)
    assert refused.status == 400, await refused.text()
    assert message in (await refused.json())["error"]["message"]


async def test_acting_and_refused_requests_are_in_the_audit_trail(api: Api, workdir: Path) -> None:
    accepted = await post(api, "/api/backup/create", Role.OPERATOR, {"type": "incremental"})
    await follow(api, (await accepted.json())["operation_id"])
    await post(api, "/api/backup/create", Role.VIEWER, {})
    await api.get("/api/status", role=None)
    await api.get("/api/status")  # a read: not recorded
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config) as repo:
        entries = [(e.actor.split("@")[0], e.action, e.outcome) for e in audit_log(repo).entries()]
        assert audit_log(repo).verify() == []
    store = TokenStore(config.storage.repository)
    names = {role: store.authenticate(token).name for role, token in api.tokens.items()}  # type: ignore[union-attr]
    assert entries == [
        (f"token:{names[Role.OPERATOR]}", "POST /api/backup/create", "ok"),
        (f"token:{names[Role.VIEWER]}", "POST /api/backup/create", "denied"),
        ("anonymous", "GET /api/status", "denied"),
    ]


async def test_promtool_accepts_the_metrics(api: Api) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make tools` installs it (Debian package prometheus)"
    await api.get("/api/status")
    text = await (await api.get("/metrics")).text()
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


MATRIX = [
    # method, path, body, the least role allowed
    ("GET", "/api/status", None, Role.VIEWER),
    ("GET", "/api/backup/list", None, Role.VIEWER),
    ("GET", "/api/backup/storage", None, Role.VIEWER),
    ("GET", "/api/backup/{backup}", None, Role.VIEWER),
    ("GET", "/api/recovery/history", None, Role.VIEWER),
    ("GET", "/api/recovery/preview?backup_id={backup}", None, Role.VIEWER),
    ("GET", "/api/recovery/scan?source=filesystem", None, Role.VIEWER),
    ("GET", "/api/openapi.json", None, Role.VIEWER),
    ("GET", "/metrics", None, Role.VIEWER),
    ("POST", "/api/backup/create", {"type": "incremental"}, Role.OPERATOR),
    ("POST", "/api/backup/{backup}/verify", {}, Role.OPERATOR),
    ("POST", "/api/recovery/restore", {"backup_id": "{backup}", "dry_run": True}, Role.OPERATOR),
    ("POST", "/api/recovery/restore", {"backup_id": "{backup}", "to": "{out}"}, Role.ADMIN),
    ("DELETE", "/api/backup/{backup}?dry_run=true&force=true", None, Role.ADMIN),
]
RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@pytest.mark.parametrize("row", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
async def test_every_endpoint_for_every_role(api: Api, workdir: Path, row: tuple[Any, ...]) -> None:
    await check_every_role(api, workdir, *row)


async def check_every_role(
    api: Api,
    workdir: Path,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    least: Role,
) -> None:
    """403 below ``least``, an answer from it up (a job followed to its end), 401 without."""
    for role in Role:
        url = api.url + path.format(backup=api.backup)
        sent = None
        if body is not None:
            text = json.dumps(body).replace("{backup}", api.backup)
            sent = json.loads(text.replace("{out}", str(workdir / f"out-{role.value}")))
        headers = {"Authorization": f"Bearer {api.tokens[role]}"}
        response = await api.http.request(method, url, json=sent, headers=headers)
        if RANK[role] < RANK[least]:
            assert response.status == 403, (role, method, path, await response.text())
        else:
            assert response.status in (200, 202), (role, method, path, await response.text())
        if response.status == 202:
            events = await follow(api, (await response.json())["operation_id"], role)
            assert events[-1]["status"] == "completed", (role, method, path, events[-1])
    anonymous = await api.http.request(method, api.url + path.format(backup=api.backup))
    assert anonymous.status == 401


async def test_against_a_running_daemon_roles_validation_rate_limit_and_a_restore(
    workdir: Path,
) -> None:
    """The same API served by ``hindsight run`` (``[api] enabled``): every endpoint for every
    role, a validation error, the rate limit, and a restore followed over the WebSocket."""
    config, backup = protected_app(workdir)
    port = free_port()
    toml = workdir / "hindsight.toml"
    head, _, section = toml.read_text().partition("[api]\n")
    section = section.replace("enabled = false", "enabled = true", 1)
    section = section.replace("port = 3000", f"port = {port}", 1)
    section = section.replace("rate_limit_per_minute = 600", "rate_limit_per_minute = 60", 1)
    toml.write_text(f"{head}[api]\n{section}")
    store = TokenStore(config.storage.repository)
    tokens = {role: store.create(role)[1] for role in Role}
    _, spare = store.create(Role.VIEWER, "rate-limited")
    live = workdir / "app/config.py"
    with running_daemon(workdir):
        async with aiohttp.ClientSession() as http:
            api = Api(f"http://127.0.0.1:{port}", http, backup, tokens)
            for _ in range(100):
                try:
                    if (await api.get("/health", role=None)).status == 200:
                        break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            for method, path, body, least in MATRIX:
                await check_every_role(api, workdir, method, path, body, least)
            refused = await post(api, "/api/backup/create", Role.OPERATOR, {"type": "weekly"})
            assert refused.status == 400
            live.write_text("DEBUG = True  # the bad change\n")
            body = {"backup_id": backup, "conflict": "overwrite", "dry_run": False}
            accepted = await post(api, "/api/recovery/restore", Role.ADMIN, body)
            assert accepted.status == 202, await accepted.text()
            events = await follow(api, (await accepted.json())["operation_id"], Role.ADMIN)
            headers = {"Authorization": f"Bearer {spare}"}
            statuses = [
                (await http.get(f"{api.url}/api/backup/list", headers=headers)).status
                for _ in range(61)
            ]
    assert events[-1]["status"] == "completed", events[-1]
    assert live.read_text() == "DEBUG = False\n"
    assert statuses[:60] == [200] * 60 and statuses[60] == 429


async def test_a_scan_with_findings_shows_in_the_status_alerts_and_metrics(
    api: Api, workdir: Path
) -> None:
    (workdir / "app/config.py").unlink()  # captured, now lost
    result = await (await api.get("/api/recovery/scan?source=filesystem")).json()
    assert result["lost_files"], result
    status = await (await api.get("/api/status")).json()
    assert status["scan_findings"] == len(result["findings"]) >= 1
    assert status["last_scan"]["scan_id"] == result["scan_id"]
    assert any(a["key"] == "scan_findings" for a in status["alerts"])
    text = await (await api.get("/metrics")).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["hindsight_scan_findings"].samples[0].value >= 1


def test_metrics_from_a_status_with_jobs_and_capture() -> None:
    from hindsight.api.metrics import Metrics

    status = {
        "journal": {"events": 10, "bytes": 2048},
        "backups": {
            "count": 1,
            "newest": {"full": {"age_s": 30}},
            "storage": {"total_bytes": 4096, "quota_bytes": 0, "quota_used": 0.0},
        },
        "daemon": {"running": True},
        "capture": [
            {"source": "filesystem", "name": "app", "state": "watching", "lag_s": 0.4, "events": 7},
            {"source": "mongodb", "name": "main", "state": "down", "events": 3},
        ],
        "jobs": [
            {"job": "full", "last": {"result": "ok", "started": "2026-11-30T02:00:00Z",
                                     "ended": "2026-11-30T02:01:30Z"}},
            {"job": "verify", "last": {"result": "failed", "started": None, "ended": None}},
        ],
        "last_recovery": {"status": "failed"},
        "recoveries": {"completed": 2, "failed": 1},
        "scan_findings": 4,
        "alerts": [{"severity": "critical"}, {"severity": "warning"}, {"severity": "critical"}],
    }  # fmt: skip
    metrics = Metrics()
    metrics.observe(status)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text().text or "")
        for s in family.samples
    }
    assert samples[("hindsight_job_last_duration_seconds", (("job", "full"),))] == 90
    assert samples[("hindsight_job_last_failed", (("job", "verify"),))] == 1
    assert samples[("hindsight_capture_up", (("name", "main"), ("source", "mongodb")))] == 0
    assert (
        samples[("hindsight_capture_lag_seconds", (("name", "app"), ("source", "filesystem")))]
        == 0.4
    )
    assert samples[("hindsight_capture_events", (("name", "app"), ("source", "filesystem")))] == 7
    assert samples[("hindsight_restores", (("status", "failed"),))] == 1
    assert samples[("hindsight_alerts_open", (("severity", "critical"),))] == 2
    assert samples[("hindsight_last_restore_failed", ())] == 1
    assert samples[("hindsight_scan_findings", ())] == 4
