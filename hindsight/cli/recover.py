"""``hindsight recover preview | restore``: bring files back to a backup or a moment.

``preview`` and ``restore --dry-run`` print the plan and write nothing at all. ``restore``
needs the journal only for reading, so it works while the daemon runs (and the daemon then
captures what the restore writes, so the restore itself can be undone from the journal).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, progress_bar
from hindsight.cli.scan import register as register_scan
from hindsight.recovery_service import RecoveryService
from hindsight.restore_request import STRATEGIES, RestoreRequest, open_service, selected
from restore.files import FileItem, Strategy

__all__ = ["register"]

PREVIEW_DOCUMENTS = 50  # documents listed one by one on a terminal


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``recover`` command group."""
    group = commands.add_parser("recover", help="preview and restore files")
    sub = group.add_subparsers(dest="recover_command", metavar="COMMAND", required=True)
    preview = sub.add_parser("preview", parents=[common], help="what a restore would do")
    restore = sub.add_parser("restore", parents=[common], help="restore files")
    for p in (preview, restore):
        p.add_argument("backup_id", nargs="?", metavar="BACKUP_ID", help="a backup to restore")
        p.add_argument("--at", metavar="TIME", help="a moment: ISO-8601 or a duration ago (2h)")
        p.add_argument("--to", type=Path, metavar="DIR", help="restore under DIR/<root>")
        p.add_argument(
            "--selective",
            default="",
            metavar="NAME[,NAME]",
            help="roots, filesystem, config, mongodb, deployments, collections",
        )
        p.add_argument("--path", action="append", default=[], metavar="GLOB",
                       help="only files matching GLOB (repeatable)")  # fmt: skip
        p.add_argument("--key", action="append", default=[], metavar="ID",
                       help="only the document whose _id is ID (extended JSON)")  # fmt: skip
        p.add_argument("--to-db", metavar="NAME", help="restore documents into database NAME")
        p.add_argument("--to-collection", metavar="NAME",
                       help="restore one collection's documents into collection NAME")  # fmt: skip
        add_key_file(p)
    restore.add_argument("--dry-run", action=argparse.BooleanOptionalAction, default=None,
                         help="print the plan, write nothing (default: "
                         "recovery.dry_run_by_default; --no-dry-run restores)")  # fmt: skip
    restore.add_argument("--no-rollback", action="store_true",
                         help="if some files fail, keep the others restored")  # fmt: skip
    restore.add_argument("--conflict", choices=sorted(STRATEGIES), metavar="STRATEGY",
                         help="skip, overwrite, rename, merge or prompt")  # fmt: skip
    preview.set_defaults(handler=run_preview)
    restore.set_defaults(handler=run_restore)
    status = sub.add_parser("status", parents=[common], help="one recovery operation's record")
    status.add_argument("operation_id", metavar="OP_ID")
    history = sub.add_parser("history", parents=[common], help="every recovery operation")
    rollback = sub.add_parser("rollback", parents=[common], help="undo an in-place restore")
    rollback.add_argument("operation_id", metavar="OP_ID")
    for p, handler in ((status, run_status), (history, run_history), (rollback, run_rollback)):
        add_key_file(p)
        p.set_defaults(handler=handler)
    register_scan(sub, common)


def _request(args: argparse.Namespace) -> RestoreRequest:
    return RestoreRequest(
        backup_id=args.backup_id,
        at=args.at,
        to=args.to,
        selective=selected(args.selective),
        paths=tuple(args.path),
        keys=tuple(args.key),
        to_db=args.to_db,
        to_collection=args.to_collection,
        conflict=getattr(args, "conflict", None),
        no_rollback=getattr(args, "no_rollback", False),
    )


def _plan(
    args: argparse.Namespace, *, writable: bool = False, capture: bool = False
) -> tuple[RecoveryService, Any, dict[str, Any]]:
    service = _open(args, writable=writable, capture=capture)
    try:
        plan, report = _request(args).plan(service)
    except BaseException:
        service.close()
        raise
    return service, plan, report


def _open(
    args: argparse.Namespace, *, writable: bool = False, capture: bool = False
) -> RecoveryService:
    config = config_from(args)
    return open_service(config, args.key_file, writable=writable, capture=capture, warn=_warn)


def _warn(text: str) -> None:
    print(f"hindsight: warning: {text}", file=sys.stderr)


def run_preview(args: argparse.Namespace) -> int:
    service, _, report = _plan(args)
    service.close()
    emit(args.json, report, lambda: _plan_text(report))
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """Restore; exit 1 when any file could not be restored."""
    if args.dry_run is None:
        args.dry_run = config_from(args).recovery.dry_run_by_default
    real = not args.dry_run
    service, plan, report = _plan(args, writable=real, capture=real and args.to is None)
    with service:
        if args.dry_run:
            report["dry_run"] = True
            emit(args.json, report, lambda: _plan_text(report) + _DRY_RUN_NOTE)
            return 0
        request = _request(args)
        request.strategy(service.config)  # a bad strategy fails before the progress bar
        total = request.total(service, plan)
        with progress_bar("restoring", not args.json) as bar:
            done = [0]

            def progress(n: int) -> None:
                done[0] += n
                bar(done[0], total)

            report = request.run(service, plan, report, progress, _ask())
    emit(args.json, report, lambda: _restore_text(report))
    return 1 if report["results"]["failed"] else 0


_DRY_RUN_NOTE = "\nDry run: nothing was written (restore with --no-dry-run)."

_ANSWERS = {"s": Strategy.SKIP, "o": Strategy.OVERWRITE, "r": Strategy.RENAME, "m": Strategy.MERGE}


def _ask() -> Callable[[FileItem], Strategy] | None:
    """For ``--conflict prompt``: ask on the terminal per conflict; None (skip) without one."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return None

    def ask(item: FileItem) -> Strategy:
        merge = ", [m]erge" if item.path.lower().endswith(".json") else ""
        question = (
            f"{item.root}/{item.path} holds a change Hindsight has not captured: "
            f"[s]kip, [o]verwrite, [r]ename{merge}? "
        )
        while True:
            print(question, end="", file=sys.stderr, flush=True)
            answer = sys.stdin.readline().strip().lower()[:1]
            if answer in _ANSWERS and (answer != "m" or merge):
                return _ANSWERS[answer]
            if not answer:
                return Strategy.SKIP

    return ask


def run_status(args: argparse.Namespace) -> int:
    service = _open(args)
    with service:
        record = service.status(args.operation_id)
    emit(args.json, record, lambda: _record_text(record))
    return 0


def run_history(args: argparse.Namespace) -> int:
    service = _open(args)
    with service:
        records = service.history()
    text = "\n".join(_record_line(r) for r in records) or "No recovery operations yet."
    emit(args.json, records, lambda: text)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    """Undo an in-place restore: every file it touched back to its state before it."""
    service = _open(args, capture=True)
    with service:
        results = service.rollback(args.operation_id)
    report = {"operation_id": args.operation_id, "results": results, "conflict": "overwrite"}
    emit(args.json, report, lambda: _restore_text(report))
    return 1 if results["failed"] else 0


def _record_line(r: dict[str, Any]) -> str:
    res = r["results"]
    source = r["backup_id"] or f"--at {r['options'].get('at')}"
    return (
        f"{r['operation_id']}  {r['status']:11} {source}  restored {res['restored']}, "
        f"failed {res['failed']}, skipped {res['skipped']}, conflicts {res['conflicts']}"
    )


def _record_text(r: dict[str, Any]) -> str:
    started = f"  started {r['started_at']}, completed {r['completed_at'] or '-'}"
    return "\n".join([_record_line(r), started, *(f"  error: {e}" for e in r["errors"])])


def _plan_text(r: dict[str, Any]) -> str:
    c, b = r["counts"], r["bytes"]
    lines = [f"Restore to journal seq {r['cut_seq']}:"]
    for action in ("create", "overwrite", "delete", "conflict", "identical"):
        if c[action]:
            lines.append(f"  {action:10} {c[action]:6} files  {format_bytes(b[action])}")
    for name, per in r.get("documents", {}).items():
        for target, counts in per.items():
            shown = ", ".join(f"{a} {n}" for a, n in counts.items() if n)
            lines.append(f"  MongoDB {name} {target}: {shown or 'nothing to do'}")
    if not r["items"] and not r.get("documents"):
        lines.append("  nothing to restore in this selection")
    for item in r["items"]:
        if item["action"] != "identical":
            lines.append(f"  {item['action']:10} {item['root']}/{item['path']}")
    docs = r.get("document_items", [])
    for item in docs[:PREVIEW_DOCUMENTS]:
        lines.append(f"  {item['action']:10} {item['collection']} _id {item['key']}")
    if len(docs) > PREVIEW_DOCUMENTS:
        lines.append(f"  ... and {len(docs) - PREVIEW_DOCUMENTS} more documents (--json lists all)")
    return "\n".join(lines)


def _restore_text(r: dict[str, Any]) -> str:
    res = r["results"]
    lines = [
        f"Operation {r['operation_id']}: restored {len(res['restored'])} files, "
        f"deleted {len(res['deleted'])}, "
        f"skipped {len(res['skipped'])}, renamed {len(res['renamed'])} "
        f"(conflicts: {r['conflict']}), failed {len(res['failed'])}"
    ]
    lines += [f"  beside the live file: {x}" for x in res["renamed"]]
    for name, d in res.get("documents", {}).items():
        for target in sorted({*d["written"], *d["deleted"], *d["skipped"]}):
            lines.append(
                f"  MongoDB {name} {target}: wrote {d['written'].get(target, 0)}, deleted "
                f"{d['deleted'].get(target, 0)}, skipped {d['skipped'].get(target, 0)}"
            )
        lines += [f"  MongoDB {name}: recreated {c}" for c in d["recreated"]]
        lines += [f"  FAILED {name} {where}: {why}" for where, why in d["failed"].items()]
    for path, fields in res["merged"].items():
        kept = f"; kept as live (changed on both sides): {', '.join(fields)}" if fields else ""
        lines.append(f"  merged {path}{kept}")
    lines += [f"  FAILED {path}: {why}" for path, why in res["failed"].items()]
    return "\n".join(lines)
