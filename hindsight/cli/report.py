"""``hindsight report ...``: audit reports over the change history (``query.reports``).

``changes``, ``deletions``, ``restores`` and ``storage`` print a table, or every row with
``--json`` (a list of row objects) or ``--csv`` (with a header), as ``hindsight sql`` does.
``audit`` prints the audit trail (``hindsight.audit``) the same way.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from hindsight.audit import audit_log
from hindsight.cli.common import add_key_file, repository_from
from hindsight.cli.output import format_bytes
from hindsight.cli.sql import add_format, output_format, print_result
from hindsight.timeparse import TIME_FORMS, parse_time
from query.engine import QueryEngine, Result
from query.reports import GROUPINGS, Reports

__all__ = ["register"]

AUDIT_COLUMNS = ["seq", "time", "actor", "action", "target", "outcome"]
AUDIT_TYPES = ["BIGINT", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR", "VARCHAR"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``report`` command group."""
    group = commands.add_parser(
        "report", help="audit reports: changes, deletions, restores, audit trail"
    )
    sub = group.add_subparsers(dest="report_command", metavar="REPORT", required=True)

    changes = sub.add_parser("changes", parents=[common], help="changes per source, namespace, "
                             "hour or day")  # fmt: skip
    _add_window(changes)
    changes.add_argument(
        "--by",
        choices=list(GROUPINGS),
        default="ns",
        help="group by source, ns (deployment and namespace; default), hour or day (UTC)",
    )
    changes.set_defaults(handler=run_changes)

    deletions = sub.add_parser("deletions", parents=[common], help="every delete, oldest first")
    _add_window(deletions)
    deletions.set_defaults(handler=run_deletions)

    restores = sub.add_parser("restores", parents=[common], help="every recovery operation")
    restores.set_defaults(handler=run_restores)

    storage = sub.add_parser("storage", parents=[common], help="repository bytes by kind")
    storage.set_defaults(handler=run_storage)

    audit = sub.add_parser("audit", parents=[common], help="the audit trail, oldest first")
    audit.add_argument("--since", metavar="TIME", help=f"from this time on; {TIME_FORMS}")
    audit.set_defaults(handler=run_audit)
    for parser in (changes, deletions, restores, storage, audit):
        add_format(parser)
        add_key_file(parser)


def _add_window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="TIME", help=f"from this time on; {TIME_FORMS}")
    parser.add_argument("--until", metavar="TIME", help="before this time (same forms)")


def _time(text: str | None) -> int | None:
    return parse_time(text) if text else None


def _run(
    args: argparse.Namespace,
    report: Callable[[Reports], Result],
    show: dict[str, Callable[[Any], str]] | None = None,
) -> int:
    """Open the repository, run ``report``, print its rows and any notes."""
    fmt = output_format(args)
    with repository_from(args) as repo, QueryEngine(repo) as engine:
        print_result(report(Reports(engine)), fmt, show)
        for note in engine.notes:
            print(f"hindsight: note: {note}", file=sys.stderr)
    return 0


def run_changes(args: argparse.Namespace) -> int:
    since, until = _time(args.since), _time(args.until)
    return _run(args, lambda r: r.changes(since, until, args.by))


def run_deletions(args: argparse.Namespace) -> int:
    since, until = _time(args.since), _time(args.until)
    return _run(args, lambda r: r.deletions(since, until), {"last_size": format_bytes})


def run_restores(args: argparse.Namespace) -> int:
    return _run(args, lambda r: r.restores())


def run_storage(args: argparse.Namespace) -> int:
    return _run(args, lambda r: r.storage(), {"bytes": format_bytes, "share": _percent})


def run_audit(args: argparse.Namespace) -> int:
    """Who did what, when, and how it ended: one row per audit entry."""
    fmt, since = output_format(args), _time(args.since)
    with repository_from(args) as repo:
        rows = (
            (e.seq, e.time, e.actor, e.action, e.target, e.outcome)
            for e in audit_log(repo).entries(since)
        )
        print_result(Result.of(AUDIT_COLUMNS, AUDIT_TYPES, rows), fmt)
    return 0


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"
