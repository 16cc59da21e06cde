"""Keeping ``hindsight sql`` read-only: a statement filter and a locked-down connection.

Two layers, because each alone leaves a hole:

- **the statement filter** (``check_statement``) parses the text with DuckDB's own parser and
  accepts exactly one statement of type SELECT (which covers ``WITH ... SELECT``, ``VALUES``,
  ``FROM t``, ``DESCRIBE``, ``SHOW`` and ``SUMMARIZE``), or an ``EXPLAIN [ANALYZE]`` of one.
  Everything else (INSERT, CREATE, COPY, ATTACH, PRAGMA, SET, INSTALL, LOAD, EXPORT, CALL,
  ...) is refused by name. DuckDB still lets a COPY or ATTACH reach a directory the
  connection may read, so the filter is needed even with the second layer.
- **the locked connection** (``lock_down``): once the views exist, external access is off
  (no file, network or extension access beyond ``allowed_directories``, which holds only
  the history directory of a plain repository), Python variables are not scanned, and the
  configuration is locked, so a SELECT cannot read other files (``read_text('/etc/passwd')``
  fails) and no statement can undo the settings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import duckdb

from journal.errors import ConfigError

__all__ = ["ALLOWED", "check_statement", "lock_down"]

ALLOWED = (
    "SELECT (also WITH ... SELECT, VALUES, FROM ..., DESCRIBE, SHOW, SUMMARIZE) "
    "or EXPLAIN [ANALYZE] of one"
)
"""What ``hindsight sql`` accepts, for error messages and help."""

_LEADING = r"(?:\s|--[^\n]*(?:\n|$)|/\*.*?\*/)*"  # blanks and comments before a statement
_EXPLAIN = re.compile(
    _LEADING + r"explain\s+(?:analy[sz]e\b\s*)?(?:\((?:[^()']|'[^']*')*\)\s*)?",
    re.IGNORECASE | re.DOTALL,
)
_FIRST_WORD = re.compile(_LEADING + r"([A-Za-z]+)", re.DOTALL)


def check_statement(connection: duckdb.DuckDBPyConnection, text: str) -> duckdb.Statement:
    """The one read-only statement ``text`` holds; ConfigError naming anything else."""
    statements = _parse(connection, text)
    if not statements:
        raise ConfigError(
            "no SQL statement given; e.g. hindsight sql 'SELECT count(*) FROM events'"
        )
    if len(statements) > 1:
        raise ConfigError(
            f"hindsight sql runs one statement at a time; got {len(statements)} (separated by ';')"
        )
    statement = statements[0]
    kind = _type(statement)
    if kind == duckdb.StatementType.EXPLAIN:
        _check_explained(connection, statement.query)
    elif kind != duckdb.StatementType.SELECT:
        raise _refused(_name(statement))
    return statement


def _type(statement: duckdb.Statement) -> duckdb.StatementType | None:
    """The statement's type; None for one this duckdb module has no name for."""
    try:
        return statement.type
    except ValueError:  # e.g. UPDATE EXTENSIONS
        return None


def _parse(connection: duckdb.DuckDBPyConnection, text: str) -> Sequence[duckdb.Statement]:
    try:
        return connection.extract_statements(text)
    except duckdb.Error as exc:
        raise ConfigError(f"bad SQL: {_first_line(exc)}") from exc


def _check_explained(connection: duckdb.DuckDBPyConnection, query: str) -> None:
    """EXPLAIN ANALYZE runs its statement: allow it only over a read-only one."""
    match = _EXPLAIN.match(query)
    if match is None:
        raise _refused("this EXPLAIN form")
    inner = _parse(connection, query[match.end() :])
    if len(inner) != 1 or _type(inner[0]) != duckdb.StatementType.SELECT:
        what = _name(inner[0]) if len(inner) == 1 else "a statement list"
        raise _refused(f"EXPLAIN of {what}")


def _name(statement: duckdb.Statement) -> str:
    """The statement's keyword as typed (INSTALL, not its type LOAD), else its type."""
    match = _FIRST_WORD.match(statement.query)
    word = match.group(1).upper() if match else ""
    kind = _type(statement)
    return word if (word and word != "WITH") or kind is None else kind.name


def _refused(what: str) -> ConfigError:
    return ConfigError(f"hindsight sql is read-only: {what} is not allowed; use {ALLOWED}")


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def lock_down(connection: duckdb.DuckDBPyConnection, readable: Sequence[Path] = ()) -> None:
    """Forbid access to anything but ``readable`` directories, then lock the configuration.

    Times are shown in UTC. Call after the views exist: nothing can be changed afterwards.
    """
    settings = [
        "SET python_enable_replacements = false",  # no scans of the caller's variables
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",
        "SET TimeZone = 'UTC'",
    ]
    if readable:
        dirs = ", ".join(_quoted(str(path).rstrip("/") + "/") for path in readable)
        settings.append(f"SET allowed_directories = [{dirs}]")
    settings += ["SET enable_external_access = false", "SET lock_configuration = true"]
    for setting in settings:
        connection.execute(setting)
