"""``hindsight run`` as a real process, for tests of commands that go through the daemon."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HINDSIGHT = Path(sys.executable).with_name("hindsight")


@contextmanager
def running_daemon(workdir: Path) -> Iterator[subprocess.Popen[str]]:
    """Start ``hindsight run`` in ``workdir`` and wait past its start-up scan; on leaving,
    stop it with SIGTERM and check it exited cleanly (0, no traceback)."""
    daemon = subprocess.Popen([HINDSIGHT, "run"], cwd=workdir, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (workdir / "backups/journal/LOCK").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # past the start-up scan
        yield daemon
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0 and "Traceback" not in err, err


def hindsight(workdir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run one ``hindsight`` command in ``workdir`` as its own process."""
    return subprocess.run(
        [HINDSIGHT, *argv], cwd=workdir, capture_output=True, text=True, timeout=60
    )


@dataclass
class Served:
    """A running ``hindsight serve``: its base URL; ``stderr`` once it has stopped."""

    base: str
    port: int
    stderr: str = ""


@contextmanager
def serving(workdir: Path, *options: str) -> Iterator[Served]:
    """``hindsight serve`` on a free port in ``workdir``, once ``/health`` answers; on
    leaving, SIGTERM, and the server's stderr in ``stderr`` (checked to hold no traceback)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(
        [HINDSIGHT, "serve", "--port", str(port), *options],
        cwd=workdir,
        stderr=subprocess.PIPE,
        text=True,
    )
    served = Served(f"http://127.0.0.1:{port}", port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "hindsight serve never listened"
                time.sleep(0.1)
        yield served
        server.send_signal(signal.SIGTERM)
        _, served.stderr = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0 and "Traceback" not in served.stderr, served.stderr[-3000:]


def http_json(url: str, token: str | None = None, body: object = None) -> tuple[int, Any]:
    """GET ``url`` (POST ``body`` as JSON when given) with the bearer ``token``: the status
    and the decoded JSON answer, errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
