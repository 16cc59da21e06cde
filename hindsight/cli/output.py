"""Printing for every command: plain text for people, ``--json`` for scripts, progress on a TTY."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

__all__ = ["emit", "emit_json_line", "format_bytes", "format_ts", "progress_bar"]


def emit(as_json: bool, data: Any, text: Callable[[], str]) -> None:
    """Print ``data`` as JSON, or the human text ``text()`` renders."""
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text())


def emit_json_line(data: Any) -> None:
    """One JSON object per line, for streams (``journal tail --json``)."""
    print(json.dumps(data, default=str), flush=True)


def format_ts(us: int | None) -> str:
    """ISO 8601 UTC with microseconds, or '-'."""
    if us is None:
        return "-"
    return datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat().replace("+00:00", "Z")


def format_bytes(n: int) -> str:
    """A byte count for people: 1.5 MiB."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


@contextmanager
def progress_bar(label: str, enabled: bool) -> Iterator[Callable[[int, int], None]]:
    """A ``progress(done, total)`` callback drawing a bar on stderr when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield lambda done, total: None
        return
    columns = (BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
