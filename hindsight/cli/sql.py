"""``hindsight sql``: read-only SQL over the change history; and how every query result prints.

Results print as a table (rich) by default, as a JSON list of row objects with ``--json``,
or as CSV with a header with ``--csv``; JSON and CSV stream, row by row. ``hindsight report``
prints its results the same way (``print_result``).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import textwrap
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hindsight.cli.common import add_key_file, repository_from
from hindsight.cli.output import emit
from journal.errors import ConfigError
from query.engine import QueryEngine, Result
from query.readonly import ALLOWED
from query.views import VIEWS, describe_views

__all__ = ["MAX_TABLE_ROWS", "add_format", "output_format", "print_result", "register"]

MAX_TABLE_ROWS = 1000
"""Rows a table shows; the rest are counted (CSV and JSON print every row)."""

_NUMERIC = ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC")

EXAMPLES = """examples:
  hindsight sql --views
  hindsight sql "SELECT namespace, count(*) FROM events GROUP BY ALL ORDER BY 2 DESC"
  hindsight sql --csv "SELECT * FROM events WHERE op = 'DELETE' AND source_ts >= '2026-11-01'"
  hindsight sql --json "SELECT backup_id, type, size FROM backups"
"""


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``sql`` command."""
    parser = commands.add_parser(
        "sql",
        parents=[common],
        help="read-only SQL over the change history, snapshots, backups and restores",
        description=textwrap.fill(
            f"Run one read-only statement: {ALLOWED}. Times are UTC. docs/QUERY.md "
            "describes every view; --views lists them.",
            width=88,
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("query", nargs="?", metavar="SQL", help="the statement to run")
    parser.add_argument("--views", action="store_true", help="list the views and their columns")
    add_format(parser)
    add_key_file(parser)
    parser.set_defaults(handler=run_sql)


def add_format(parser: argparse.ArgumentParser) -> None:
    """``--csv`` (``--json`` comes with every command)."""
    parser.add_argument("--csv", action="store_true", help="print CSV with a header row")


def output_format(args: argparse.Namespace) -> str:
    """``table``, ``json`` or ``csv``, from ``--json`` and ``--csv``."""
    if args.json and args.csv:
        raise ConfigError("choose one of --json and --csv")
    return "json" if args.json else "csv" if args.csv else "table"


def run_sql(args: argparse.Namespace) -> int:
    """Print the views, or run the statement and print its rows."""
    if args.views:
        emit(args.json, describe_views(), _views_text)
        return 0
    if not args.query:
        raise ConfigError('give a statement, e.g. hindsight sql "SELECT count(*) FROM events"')
    fmt = output_format(args)
    with repository_from(args) as repo, QueryEngine(repo) as engine:
        print_result(engine.sql(args.query), fmt)
        for note in engine.notes:
            print(f"hindsight: note: {note}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------- printing
def print_result(
    result: Result, fmt: str, show: Mapping[str, Callable[[Any], str]] | None = None
) -> None:
    """Print ``result`` as ``table``, ``json`` or ``csv``; ``show`` formats table cells."""
    if fmt == "json":
        _print_json(result)
    elif fmt == "csv":
        _print_csv(result)
    else:
        _print_table(result, show or {})


def _json_value(value: Any) -> Any:
    """What ``json`` cannot write by itself."""
    if isinstance(value, datetime | date | time):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def _print_json(result: Result) -> None:
    out, count = sys.stdout, 0
    out.write("[")
    for row in result:
        item = json.dumps(dict(zip(result.columns, row, strict=True)), default=_json_value)
        out.write(("," if count else "") + "\n  " + item)
        count += 1
    out.write("\n]\n" if count else "]\n")
    out.flush()


def _cell(value: Any) -> str:
    """One value as text: NULL empty (CSV), nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, list | dict | tuple):
        return json.dumps(value, default=_json_value)
    if isinstance(value, str):
        return value
    text = _json_value(value)
    return text if isinstance(text, str) else str(text)


def _print_csv(result: Result) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result:
        writer.writerow([_cell(v) for v in row])


def _print_table(result: Result, show: Mapping[str, Callable[[Any], str]]) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, highlight=False)
    for name, type_ in zip(result.columns, result.types, strict=True):
        numeric = any(t in type_.upper() for t in _NUMERIC) and "[]" not in type_
        table.add_column(name, justify="right" if numeric else "left", overflow="fold")
    count = 0
    for row in result:
        if count < MAX_TABLE_ROWS:
            table.add_row(
                *(_table_cell(c, v, show) for c, v in zip(result.columns, row, strict=True))
            )
        count += 1
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 4096)
    console.print(table)
    plural = "" if count == 1 else "s"
    more = (
        f"; the first {MAX_TABLE_ROWS:,} shown (--csv or --json print all)"
        if count > MAX_TABLE_ROWS
        else ""
    )
    print(f"({count:,} row{plural}{more})")


def _table_cell(column: str, value: Any, show: Mapping[str, Callable[[Any], str]]) -> Text:
    if value is None:
        return Text("NULL", style="dim")
    if column in show:
        return Text(show[column](value))
    return Text(_cell(value))


def _views_text() -> str:
    lines = []
    for view in VIEWS:
        lines += ["", f"{view.name}: {view.doc}"]
        width = max(len(c.name) for c in view.columns)
        kinds = max(len(c.type) for c in view.columns)
        lines += [f"  {c.name:{width}}  {c.type:{kinds}}  {c.doc}" for c in view.columns]
    return "\n".join(lines[1:])
