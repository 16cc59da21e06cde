"""The API served by a running daemon (``hindsight run`` with ``[api] enabled``): reads, and a
backup job that goes through the daemon, which holds the journal."""

from __future__ import annotations

import time
from pathlib import Path

from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.tokens import Role, TokenStore
from tests.daemon_process import http_json, running_daemon
from tests.hindsight.test_serve import free_port


def test_the_daemon_serves_the_api_and_runs_its_jobs(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(app)]) == 0
    port = free_port()
    toml = workdir / "hindsight.toml"
    head, _, api = toml.read_text().partition("[api]\n")
    api = api.replace("enabled = false", "enabled = true", 1).replace(
        "port = 3000", f"port = {port}", 1
    )
    toml.write_text(f"{head}[api]\n{api}")
    config = load_config(toml)
    assert config.api.enabled and config.api.port == port
    _, token = TokenStore(config.storage.repository).create(Role.OPERATOR, "ci")
    base = f"http://127.0.0.1:{port}"
    with running_daemon(workdir):
        deadline = time.monotonic() + 30
        while True:
            try:
                status = http_json(f"{base}/api/status", token)
                break
            except OSError:
                assert time.monotonic() < deadline, "the daemon's API never answered"
                time.sleep(0.1)
        created = http_json(
            f"{base}/api/backup/create", token, {"type": "full", "scope": ["filesystem"]}
        )
        job = created[1]
        deadline = time.monotonic() + 60
        while job["status"] not in ("completed", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
            job = http_json(f"{base}{created[1]['status_url']}", token)[1]
        listed = http_json(f"{base}/api/backup/list", token)
    assert status[0] == 200 and status[1]["journal"]["events"] > 0
    assert created[0] == 202
    assert job["status"] == "completed", job
    assert job["result"]["via_daemon"] is True, "the daemon holds the journal and took it"
    assert [b["type"] for b in listed[1]] == ["full"]
