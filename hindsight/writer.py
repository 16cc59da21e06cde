"""Work that writes the repository, done by whoever may: this process when it can take the
journal's lock, else the running daemon (``hindsight.control``), which holds it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hindsight.backup_service import BackupService
from hindsight.config import Config
from hindsight.control import ask_daemon
from hindsight.wiring import open_repository
from journal.errors import JournalLocked

__all__ = ["as_writer"]


def as_writer(
    config: Config,
    key_file: Path | None,
    action: str,
    request: dict[str, Any],
    local: Callable[[BackupService], dict[str, Any]],
) -> dict[str, Any]:
    """Run ``local`` as the journal's writer, or have the running daemon run ``action`` with
    ``request`` (the answer then says ``via_daemon``)."""
    try:
        repo = open_repository(config, writable=True, key_file=key_file)
    except JournalLocked:
        answer: dict[str, Any] = ask_daemon(config.storage.repository, action, request)
        answer["via_daemon"] = True
        return answer
    with repo:
        return local(BackupService(config, repo))
