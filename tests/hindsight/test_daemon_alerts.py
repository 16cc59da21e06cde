"""A running daemon publishes its state and sends alerts to a real webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hindsight.cli.main import main
from tests.daemon_process import hindsight, running_daemon


@contextmanager
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP server collecting the JSON bodies POSTed to it."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/s3cr3t-t0ken", received
    finally:
        server.shutdown()
        server.server_close()


def test_an_over_quota_repository_raises_an_alert_at_the_webhook(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(app)]) == 0
    toml = workdir / "hindsight.toml"
    with receiver() as (url, received):
        text = toml.read_text()
        text = text.replace('max_size = ""', 'max_size = "1KiB"', 1)
        text = text.replace("status_interval_s = 60", "status_interval_s = 1", 1)
        text = text.replace('alert_webhook = ""', f'alert_webhook = "{url}"', 1)
        toml.write_text(text)
        with running_daemon(workdir):
            deadline = time.monotonic() + 30
            while not any(r["key"] == "quota" for r in received):
                assert time.monotonic() < deadline, f"no quota alert: {received}"
                time.sleep(0.2)
            status = json.loads(hindsight(workdir, "status", "--json").stdout)
    quota = next(r for r in received if r["key"] == "quota")
    assert quota["status"] == "firing" and quota["severity"] == "critical"
    assert status["daemon"]["running"] is True
    assert [c["name"] for c in status["capture"]] == ["app"]
    assert 0 <= status["capture"][0]["lag_s"] < 60, "the worst capture lag, in seconds"
    assert any(a["key"] == "quota" for a in status["alerts"])
    stopped = json.loads(hindsight(workdir, "status", "--json").stdout)
    assert stopped["daemon"]["running"] is False, "a stopped daemon shows as stopped"
    assert any(a["key"].startswith("capture_stopped") for a in stopped["alerts"])
