"""Asking the running daemon to do work that needs the journal's single writer.

While the daemon runs it holds the journal's writer lock, so a command that must write the
journal (an incremental backup seals a segment; pruning drops segments and blob packs) asks
the daemon instead: it writes a request file into ``<repository>/control/``, the daemon
picks it up within a second, does the work and writes the result next to it. Files are
written atomically; a request nobody answers times out with a clear error.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from journal.errors import (
    AuthError,
    ConfigError,
    CorruptionError,
    HindsightError,
    JournalLocked,
    NotFound,
    RepositoryError,
    SourceUnavailable,
)
from journal.fsutil import atomic_write

__all__ = ["CONTROL_DIR", "answer_requests", "ask_daemon"]

CONTROL_DIR = "control"
REQUEST_SUFFIX = ".request.json"
RESULT_SUFFIX = ".result.json"
DEFAULT_TIMEOUT_S = 3600.0
PICKUP_TIMEOUT_S = 15.0


def ask_daemon(
    root: Path,
    action: str,
    args: dict[str, Any],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    pickup_timeout_s: float = PICKUP_TIMEOUT_S,
) -> Any:
    """Have the daemon run ``action``; its result, or its error re-raised here."""
    folder = root / CONTROL_DIR
    folder.mkdir(exist_ok=True)
    request_id = uuid.uuid4().hex
    request = folder / f"{request_id}{REQUEST_SUFFIX}"
    result = folder / f"{request_id}{RESULT_SUFFIX}"
    atomic_write(request, json.dumps({"action": action, "args": args}).encode())
    started = time.monotonic()
    try:
        while not result.exists():
            waited = time.monotonic() - started
            if request.exists() and waited > pickup_timeout_s:
                raise RepositoryError(
                    "the journal is locked by another process that does not answer requests "
                    f"(waited {pickup_timeout_s:.0f} s); if it is not a running `hindsight run`, "
                    "wait for that command to finish"
                )
            if waited > timeout_s:
                raise RepositoryError(f"the daemon did not finish {action} in {timeout_s:.0f} s")
            time.sleep(0.1)
        answer = json.loads(result.read_text())
    finally:
        for path in (request, result):
            path.unlink(missing_ok=True)
    if not answer.get("ok"):
        kind = _ERRORS.get(str(answer.get("kind")), RepositoryError)  # same exit code as here
        raise kind(
            str(answer.get("error")), path=answer.get("path") or "", offset=answer.get("offset")
        )
    return answer.get("result")


_ERRORS: dict[str, type[HindsightError]] = {
    cls.__name__: cls
    for cls in (ConfigError, RepositoryError, NotFound, JournalLocked, CorruptionError, AuthError)
}
_ERRORS["SourceUnavailable"] = SourceUnavailable


def answer_requests(root: Path, handle: Callable[[str, dict[str, Any]], Any]) -> int:
    """Run every pending request through ``handle`` (daemon side); how many were answered.

    A request is claimed by renaming it first, so the asker sees that it was picked up.
    """
    folder = root / CONTROL_DIR
    if not folder.is_dir():
        return 0
    answered = 0
    for request in sorted(folder.glob(f"*{REQUEST_SUFFIX}")):
        request_id = request.name[: -len(REQUEST_SUFFIX)]
        claimed = folder / f".{request_id}.claimed"
        try:
            os.replace(request, claimed)
        except FileNotFoundError:
            continue
        try:
            body = json.loads(claimed.read_text())
            answer = {"ok": True, "result": handle(str(body["action"]), dict(body["args"]))}
        except HindsightError as exc:
            answer = {"ok": False, "error": exc.reason, "kind": type(exc).__name__}
            answer |= {"path": exc.path, "offset": exc.offset}
        except (ValueError, KeyError, TypeError) as exc:
            answer = {"ok": False, "error": f"malformed request: {exc}"}
        atomic_write(folder / f"{request_id}{RESULT_SUFFIX}", json.dumps(answer).encode())
        claimed.unlink(missing_ok=True)
        answered += 1
    return answered
