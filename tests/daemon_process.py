"""``hindsight run`` as a real process, for tests of commands that go through the daemon."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
