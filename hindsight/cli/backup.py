"""``hindsight backup create``: one reconciling scan, for when no daemon is running."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from capture.filesystem import FileCapture
from capture.state import KnownFiles
from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, progress_bar
from hindsight.wiring import file_roots, open_repository
from journal.repository import Repository

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``backup`` command group."""
    group = commands.add_parser("backup", help="take backups on demand")
    sub = group.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)
    create = sub.add_parser(
        "create", parents=[common], help="capture every change since the last backup now"
    )
    add_key_file(create)
    create.set_defaults(handler=run_create)


def run_create(args: argparse.Namespace) -> int:
    """Scan every protected root and append what changed; print a summary."""
    config = config_from(args)
    roots = file_roots(config)
    started = time.monotonic()
    with open_repository(config, writable=True, key_file=args.key_file) as repo:
        before = _stored_bytes(repo)
        known = KnownFiles()
        known.apply_all(repo.log.read())
        capture = FileCapture(roots, repo.log, repo.blobs, known)
        with progress_bar("scanning", not args.json) as progress:
            summary = capture.scan(progress=progress)
        repo.blobs.flush()
        stored = _stored_bytes(repo) - before
    report = {
        **dataclasses.asdict(summary),
        "problems": [p._asdict() for p in summary.problems],
        "bytes_stored": stored,
        "seconds": round(time.monotonic() - started, 3),
        "roots": [r.name for r in roots],
    }
    emit(args.json, report, lambda: _text(report))
    return 0


def _stored_bytes(repo: Repository) -> int:
    return repo.log.stats().bytes + repo.blobs.stats().stored_bytes


def _text(r: dict[str, Any]) -> str:
    lines = [
        f"Scanned {r['files']} files in {', '.join(r['roots']) or 'no roots'} "
        f"in {r['seconds']:.1f} s",
        f"  new {r['new']}, changed {r['changed']}, moved {r['moved']}, deleted {r['deleted']}, "
        f"unchanged {r['unchanged']}",
        f"  read {format_bytes(r['bytes_read'])}, stored {format_bytes(r['bytes_stored'])} "
        "after dedup and compression",
    ]
    lines += [
        f"  could not capture {p['root']}/{p['relpath']}: {p['reason']}" for p in r["problems"]
    ]
    if not r["roots"]:
        lines.append("No directory is protected: add [[sources.filesystem]] to the config.")
    return "\n".join(lines)
