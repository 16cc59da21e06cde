"""What every benchmark here shares: leaving cleanly on SIGTERM, progress lines."""

from __future__ import annotations

import signal
import sys
import time

__all__ = ["leave_cleanly_on_sigterm", "progress"]


def stop_on_signal(signum: int, _frame: object) -> None:
    """Leave by SystemExit, running every ``finally``: servers stop, temporary files go."""
    raise SystemExit(128 + signum)


def leave_cleanly_on_sigterm() -> None:
    """A SIGTERM (``timeout``, CI cancelling a job) runs the cleanups as Ctrl-C would."""
    signal.signal(signal.SIGTERM, stop_on_signal)


def progress(text: str) -> None:
    """A timestamped progress line on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)
