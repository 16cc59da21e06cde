"""``hindsight backup create``: capture everything now, for when no daemon is running.

Files: one reconciling scan. MongoDB: a one-shot sync (the initial copy the first time, then
the change stream from where the journal left off, until it has caught up).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from capture.filesystem import FileCapture, ScanSummary
from capture.mongo_state import KnownMongo
from capture.state import KnownFiles
from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, progress_bar
from hindsight.daemon import replay
from hindsight.wiring import file_roots, mongo_captures, open_repository
from journal.repository import Repository

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``backup`` command group."""
    group = commands.add_parser("backup", help="take backups on demand")
    sub = group.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)
    create = sub.add_parser(
        "create", parents=[common], help="capture every change since the last backup now"
    )
    create.add_argument(
        "--scope",
        type=_scopes,
        default=SCOPES,
        metavar="SCOPE[,SCOPE]",
        help="what to capture: filesystem, mongodb (default: both)",
    )
    add_key_file(create)
    create.set_defaults(handler=run_create)


SCOPES = ("filesystem", "mongodb")


def _scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise argparse.ArgumentTypeError(
            f"unknown scope {', '.join(unknown) or repr(text)}; use {' or '.join(SCOPES)}, "
            "comma-separated"
        )
    return scopes


def run_create(args: argparse.Namespace) -> int:
    """Scan every protected root and sync every database; print a summary."""
    config = config_from(args)
    roots = file_roots(config) if "filesystem" in args.scope else []
    started = time.monotonic()
    with open_repository(config, writable=True, key_file=args.key_file) as repo:
        before = _stored_bytes(repo)
        known, known_mongo = KnownFiles(), KnownMongo()
        replay(repo.log.read(), known, known_mongo)
        summary = ScanSummary()
        if roots:
            capture = FileCapture(roots, repo.log, repo.blobs, known)
            with progress_bar("scanning", not args.json) as progress:
                summary = capture.scan(progress=progress)
            repo.blobs.flush()
        mongo = mongo_captures(config, repo.log, known_mongo) if "mongodb" in args.scope else []
        synced = {}
        for deployment in mongo:
            with deployment:
                synced[deployment.target.name] = dataclasses.asdict(deployment.sync())
        stored = _stored_bytes(repo) - before
    report = {
        **dataclasses.asdict(summary),
        "problems": [p._asdict() for p in summary.problems],
        "bytes_stored": stored,
        "seconds": round(time.monotonic() - started, 3),
        "roots": [r.name for r in roots],
        "mongodb": synced,
    }
    emit(args.json, report, lambda: _text(report))
    return 0


def _stored_bytes(repo: Repository) -> int:
    return repo.log.stats().bytes + repo.blobs.stats().stored_bytes


def _text(r: dict[str, Any]) -> str:
    lines = []
    if r["roots"]:
        lines += [
            f"Scanned {r['files']} files in {', '.join(r['roots'])} in {r['seconds']:.1f} s",
            f"  new {r['new']}, changed {r['changed']}, moved {r['moved']}, "
            f"deleted {r['deleted']}, unchanged {r['unchanged']}",
            f"  read {format_bytes(r['bytes_read'])}, stored {format_bytes(r['bytes_stored'])} "
            "after dedup and compression",
        ]
    lines += [
        f"  could not capture {p['root']}/{p['relpath']}: {p['reason']}" for p in r["problems"]
    ]
    for name, m in r["mongodb"].items():
        how = "initial sync" if m["initial_sync"] else "caught up"
        lines.append(
            f"MongoDB {name}: {how}, {m['collections']} collections, "
            f"{m['documents_copied']} documents copied, {m['events']} events"
            + (f", {m['dropped']} collections gone since the last capture" if m["dropped"] else "")
        )
    if not r["roots"] and not r["mongodb"]:
        lines.append(
            "Nothing is protected in this scope: add [[sources.filesystem]] or "
            "[[sources.mongodb]] to the config."
        )
    return "\n".join(lines)
