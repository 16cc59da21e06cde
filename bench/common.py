"""What every benchmark here shares: a scratch directory, leaving cleanly on SIGTERM,
progress lines."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["leave_cleanly_on_sigterm", "progress", "scratch_dir"]


def stop_on_signal(signum: int, _frame: object) -> None:
    """Leave by SystemExit, running every ``finally``: servers stop, temporary files go."""
    raise SystemExit(128 + signum)


def leave_cleanly_on_sigterm() -> None:
    """A SIGTERM (``timeout``, CI cancelling a job) runs the cleanups as Ctrl-C would."""
    signal.signal(signal.SIGTERM, stop_on_signal)


def progress(text: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def scratch_dir(prefix: str, parent: Path | None) -> Path:
    """A fresh, empty directory for one run under ``parent`` (``--dir``, made if missing;
    default the system's temporary directory), as an absolute path. The caller removes it."""
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent)).resolve()
