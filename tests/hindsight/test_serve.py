"""``hindsight serve`` as a real process: it listens, answers with a token, stops cleanly."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.tokens import Role, TokenStore
from tests.daemon_process import HINDSIGHT


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
    port = free_port()
    server = subprocess.Popen(
        [HINDSIGHT, "serve", "--port", str(port)], cwd=workdir, stderr=subprocess.PIPE, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = fetch(f"{base}/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered"
                time.sleep(0.1)
        unauthorised = fetch(f"{base}/api/status")
        status = fetch(f"{base}/api/status", token)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert health == (200, {"status": "ok"})
    assert unauthorised[0] == 401
    assert status[0] == 200 and status[1]["repository"] == str(config.storage.repository)
    assert server.returncode == 0 and "Traceback" not in err, err
    assert f"listening on http://127.0.0.1:{port}" in err


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
