"""``QueryEngine``: read-only SQL over one repository, in an in-memory DuckDB.

The views (``query.views``) are created once, over tables that start empty in the schema
``_src`` and are filled the first time a statement needs them (DuckDB's binder names the
tables a statement reads, through views and ``query()`` alike), so ``SELECT * FROM
backups`` never decodes the journal. ``events`` is the sealed history, read straight from
its Parquet files by DuckDB (plain repository) or through a pyarrow dataset that decrypts
them as they are read (encrypted repository), UNION ALL the journal's tail: the events no
history file holds, decoded from the journal when first needed. Then the connection is
locked down (``query.readonly``).

A result streams: rows are fetched as they are read, and it is valid until the next
statement. Errors leave as Hindsight errors: bad SQL as ConfigError, damage found while
reading as the CorruptionError (or AuthError) that found it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from compaction.history import HISTORY_SCHEMA
from journal.errors import ConfigError, CorruptionError, HindsightError
from journal.repository import Repository
from query.readonly import check_statement, lock_down
from query.sources import Sources
from query.views import BACKUPS, BLOBS, EVENTS, RECOVERIES, SNAPSHOT_TABLES, SNAPSHOTS

__all__ = ["FETCH_ROWS", "QueryEngine", "Result"]

FETCH_ROWS = 10_000
"""Rows fetched from DuckDB at a time while a result is read."""

_SOURCE = "_src"  # the schema of the tables behind the views
_TAIL = "tail"  # the table of the journal's tail, behind ``events``
_HISTORY = "_history"  # the sealed history's dataset, as registered


class Result:
    """The rows of one statement: column names and DuckDB types, then the rows, streamed."""

    def __init__(
        self, columns: list[str], types: list[str], rows: Iterator[tuple[Any, ...]]
    ) -> None:
        self.columns, self.types, self._rows = columns, types, rows

    @classmethod
    def of(cls, columns: list[str], types: list[str], rows: Iterable[tuple[Any, ...]]) -> Result:
        """A result made in Python (a report that is not one statement)."""
        return cls(columns, types, iter(rows))

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self._rows

    def dicts(self) -> list[dict[str, Any]]:
        """Every remaining row as a dict keyed by column name."""
        return [dict(zip(self.columns, row, strict=True)) for row in self._rows]


class QueryEngine:
    """Read-only SQL over the history and catalogs of one opened repository."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.sources = Sources(repo)
        self._failure: HindsightError | None = None
        self._con = duckdb.connect(":memory:")
        self._fillers: dict[str, Callable[[], pa.Table | pa.RecordBatchReader]] = {
            _TAIL: self._tail_reader,
            SNAPSHOTS.name: self.sources.snapshots,
            SNAPSHOT_TABLES.name: self.sources.snapshot_tables,
            BACKUPS.name: self.sources.backups,
            BLOBS.name: self.sources.blobs,
            RECOVERIES.name: self.sources.recoveries,
        }
        self._filled: set[str] = set()
        try:
            readable = self._create_views()
            lock_down(self._con, readable)
        except BaseException:
            self._con.close()
            raise

    @property
    def notes(self) -> list[str]:
        """Records left out of the views (damaged, or sealed under a withheld key)."""
        return self.sources.notes

    # ---------------------------------------------------------------- set-up
    def _create_views(self) -> list[Path]:
        """Create every view; the directories DuckDB itself must read."""
        con = self._con
        con.execute(f"CREATE SCHEMA {_SOURCE}")
        for view in (SNAPSHOTS, SNAPSHOT_TABLES, BACKUPS, BLOBS, RECOVERIES):
            con.execute(view.ddl(f"{_SOURCE}.{view.name}"))
            con.execute(f"CREATE VIEW {view.name} AS SELECT * FROM {_SOURCE}.{view.name}")
        con.execute(EVENTS.ddl(f"{_SOURCE}.{_TAIL}"))
        columns = ", ".join(f'"{c.name}"' for c in EVENTS.columns)
        branches = [f"SELECT {columns} FROM {_SOURCE}.{_TAIL}"]
        history, readable = self._history()
        if history:
            typed = ", ".join(f'CAST("{c.name}" AS {c.type}) AS "{c.name}"' for c in EVENTS.columns)
            branches.insert(0, f"SELECT {typed} FROM {history}")
        con.execute(f"CREATE VIEW {EVENTS.name} AS {' UNION ALL '.join(branches)}")
        return readable

    def _history(self) -> tuple[str | None, list[Path]]:
        """The FROM clause of the history files, and the directories it needs to read."""
        if not self.sources.files:
            return None, []
        if self.sources.history.store.sealed:
            self._con.register(_HISTORY, self.sources.history_dataset())
            return _HISTORY, []
        folder = self.sources.history_dir
        names = ", ".join(_sql_text(p) for p in self.sources.history_paths())
        if any(c in str(folder) for c in "*?[{"):  # not a usable glob: list the files
            return f"read_parquet([{names}])", [folder]
        # A glob narrowed to the indexed files by name rather than a list of files, which
        # DuckDB's get_table_names cannot bind. The filter prunes the files it leaves out
        # before their data is read; an unindexed file is a whole one a crash left (writes
        # are renamed into place), so even its schema, read at binding, is harmless.
        pattern = _sql_text(f"{folder}/[0-9]*.parquet")
        scan = f"read_parquet({pattern}, filename = true) WHERE filename IN ({names})"
        return scan, [folder]

    # --------------------------------------------------------------- queries
    def sql(self, text: str) -> Result:
        """Run one read-only statement (``query.readonly``); its result, streamed.

        ConfigError for a statement that is not read-only or does not parse or bind.
        """
        statement = check_statement(self._con, text)
        with self._translated():
            self._fill(self._tables(text))
            cursor = self._con.execute(statement)
            columns = [d[0] for d in cursor.description or []]
            types = [str(d[1]) for d in cursor.description or []]
        return Result(columns, types, self._fetch(cursor))

    def _tables(self, text: str) -> set[str]:
        """The tables ``text`` reads; every source table when DuckDB cannot tell.

        ``get_table_names`` binds the statement, but fails on some that run (an ASOF join,
        in DuckDB 2.0): then everything is loaded, which is slower, never wrong.
        """
        try:
            return self._con.get_table_names(text)
        except duckdb.Error:
            return set(self._fillers)

    def _fetch(self, cursor: duckdb.DuckDBPyConnection) -> Iterator[tuple[Any, ...]]:
        while True:
            with self._translated():
                rows = cursor.fetchmany(FETCH_ROWS)
            if not rows:
                return
            yield from rows

    def _fill(self, tables: Iterable[str]) -> None:
        """Load the source tables a statement reads that are still empty."""
        for name in sorted(set(tables) & self._fillers.keys() - self._filled):
            self._con.register("_load", self._fillers[name]())
            try:
                self._con.execute(f"INSERT INTO {_SOURCE}.{name} SELECT * FROM _load")
            finally:
                self._con.unregister("_load")
            self._filled.add(name)

    def _tail_reader(self) -> pa.RecordBatchReader:
        return pa.RecordBatchReader.from_batches(
            HISTORY_SCHEMA, self._recorded(self.sources.tail())
        )

    def _recorded(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches``, keeping the error that stops them: DuckDB would only keep its text."""
        try:
            yield from batches
        except HindsightError as exc:
            self._failure = self._failure or exc
            raise

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """DuckDB's errors as Hindsight's: the real one when reading our data failed."""
        try:
            yield
        except duckdb.Error as exc:
            sealed = self.sources.sealed
            failure = self._failure or (sealed.failure if sealed else None)
            if failure is not None:
                raise failure from exc
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            if isinstance(exc, duckdb.IOException | duckdb.InvalidInputException) and any(
                path in message for path in self.sources.history_paths()
            ):
                raise CorruptionError(f"cannot read the history: {message}") from exc
            raise ConfigError(f"SQL error: {message}") from exc

    # --------------------------------------------------------------- closing
    def close(self) -> None:
        """Release DuckDB (results still being read become unusable)."""
        self._con.close()

    def __enter__(self) -> QueryEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sql_text(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
