"""``hindsight serve`` as a real process: it listens, answers with a token, stops cleanly."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.tokens import Role, TokenStore
from tests.daemon_process import HINDSIGHT, serving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, token: str | None = None) -> tuple[int, dict]:  # type: ignore[type-arg]
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_over_http_and_stops_on_sigterm(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(app)]) == 0
    config = load_config(workdir / "hindsight.toml")
    _, token = TokenStore(config.storage.repository).create(Role.VIEWER, "ops")
    with serving(workdir) as served:
        health = fetch(f"{served.base}/health")
        unauthorised = fetch(f"{served.base}/api/status")
        status = fetch(f"{served.base}/api/status", token)
    assert health == (200, {"status": "ok"})
    assert unauthorised[0] == 401
    assert status[0] == 200 and status[1]["repository"] == str(config.storage.repository)
    assert f"listening on http://127.0.0.1:{served.port}" in served.stderr


def test_serve_refuses_a_port_in_use_with_one_line(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    assert main(["init", "--protect", str(app)]) == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [HINDSIGHT, "serve", "--port", str(port)],
            cwd=workdir, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
