"""A MongoDB test server: ``nx-27017`` (MongoDB wire protocol on SQLite) as a subprocess.

Everything the server writes (data, log, console output, pid file) stays inside the root
directory it is given. ``stop()``/``kill()`` followed by ``start()`` restarts it on the same
port and data directory, so a test can take the server away under an open change stream.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pymongo import MongoClient
from pymongo.errors import PyMongoError

EXECUTABLE = Path(sys.executable).parent / "nx-27017"
DEFAULT_START_TIMEOUT = 15.0
DEFAULT_STOP_TIMEOUT = 5.0
DEFAULT_SELECTION_TIMEOUT_MS = 2000
LOG_TAIL_LINES = 30


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path.name} does not exist)"
    return "\n".join(text.splitlines()[-lines:]) or f"({path.name} is empty)"


class MongoServer:
    """One nx-27017 server on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        start_timeout: float = DEFAULT_START_TIMEOUT,
    ) -> None:
        self.root = root
        self.port = port if port is not None else free_port()
        self.data_dir = root / "data"
        self.log_file = root / "server.log"
        self.console_file = root / "server.out"
        self.pid_file = root / "server.pid"
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        """The connection string of this server."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def client(self, **kwargs: Any) -> MongoClient[dict[str, Any]]:
        """A new client for this server that gives up quickly when it is down."""
        options: dict[str, Any] = {"serverSelectionTimeoutMS": DEFAULT_SELECTION_TIMEOUT_MS}
        options.update(kwargs)
        return MongoClient(self.uri, **options)

    def start(self) -> None:
        """Start the server (again, on the same port and data) and wait until it answers."""
        if self.running:
            return
        if not EXECUTABLE.exists():
            raise RuntimeError(f"{EXECUTABLE} is missing; run: pip install -e '.[dev]'")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # A SIGKILLed server leaves its pid file behind; a reused pid would block the start.
        self.pid_file.unlink(missing_ok=True)
        with self.console_file.open("ab") as console:
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TMPDIR": str(self.root)},
            )
        self._wait_ready()

    def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Stop the server with SIGTERM, then SIGKILL if it has not exited within timeout."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process.wait()
        self._process = None

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would, and reap it."""
        if self._process is None:
            return
        self._process.kill()
        self._process.wait()
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _command(self) -> list[str]:
        return [
            str(EXECUTABLE),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-file",
            str(self.log_file),
            "--pid-file",
            str(self.pid_file),
        ]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        with self.client(serverSelectionTimeoutMS=250, connectTimeoutMS=250) as probe:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise self._error(f"exited with code {self._process.returncode}")
                try:
                    probe.admin.command("ping")
                    return
                except PyMongoError:
                    time.sleep(0.05)
        self.stop()
        raise self._error(f"did not answer ping within {self.start_timeout:.0f} s")

    def _error(self, problem: str) -> RuntimeError:
        return RuntimeError(
            f"nx-27017 on port {self.port} {problem} during start-up\n"
            f"--- {self.log_file} ---\n{_tail(self.log_file)}\n"
            f"--- {self.console_file} ---\n{_tail(self.console_file)}"
        )
