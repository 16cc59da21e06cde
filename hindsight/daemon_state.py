"""What the running daemon tells other processes about itself: ``<repository>/daemon/state.json``.

The daemon rewrites it (atomically) at every status report: its pid, when it started and
wrote, and each source's capture state. (The alerts that hold are read from the status
itself, ``hindsight.alert_conditions``.) A reader counts the daemon
as running only if the file is fresh (written within three status intervals) and its pid is
alive, so a crashed daemon shows as stopped.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from journal.fsutil import atomic_write, make_dirs

__all__ = ["STATE_FILE", "read_state", "write_state"]

STATE_FILE = "daemon/state.json"
STALE_INTERVALS = 3


def write_state(root: Path, state: dict[str, Any]) -> None:
    """Publish the daemon's ``state`` (pid and write time are added)."""
    path = root / STATE_FILE
    make_dirs(path.parent)
    doc = {**state, "pid": os.getpid(), "updated_at": time.time()}
    atomic_write(path, json.dumps(doc, indent=2, default=str).encode())


def read_state(root: Path, now: float | None = None) -> dict[str, Any]:
    """The daemon's last published state, with ``running``; ``{"running": False}`` when it
    has never run here (or the file is unreadable, which a running daemon soon rewrites)."""
    try:
        doc = json.loads((root / STATE_FILE).read_text())
        interval = float(doc.get("status_interval_s", 60))
        fresh = (now or time.time()) - float(doc["updated_at"]) <= STALE_INTERVALS * interval
        pid = int(doc["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return {"running": False}
    return {**doc, "running": fresh and _alive(pid)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
