"""``hindsight sql`` is read-only: the statement filter, the locked connection, and both
together in the engine (no file outside the repository's history can be read or written)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from journal.errors import ConfigError
from query import QueryEngine, check_statement
from query.readonly import lock_down
from tests.query.conftest import Built

REFUSED = {
    "insert": ("INSERT INTO t VALUES (1)", "INSERT"),
    "update": ("UPDATE t SET a = 1", "UPDATE"),
    "delete": ("DELETE FROM t", "DELETE"),
    "merge": ("MERGE INTO t USING t s ON true WHEN MATCHED THEN DELETE", "MERGE"),
    "create-table": ("CREATE TABLE u (a INT)", "CREATE"),
    "create-table-as": ("CREATE TABLE u AS SELECT 1", "CREATE"),
    "create-view": ("CREATE OR REPLACE VIEW events AS SELECT 1", "CREATE"),
    "create-macro": ("CREATE MACRO f(x) AS x", "CREATE"),
    "create-secret": ("CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')", "CREATE"),
    "drop": ("DROP VIEW events", "DROP"),
    "alter": ("ALTER TABLE t ADD COLUMN b INT", "ALTER"),
    "copy-to": ("COPY (SELECT 1) TO '/tmp/hindsight-copy.csv'", "COPY"),
    "copy-from": ("COPY t FROM '/etc/passwd'", "COPY"),
    "export": ("EXPORT DATABASE '/tmp/hindsight-export'", "EXPORT"),
    "import": ("IMPORT DATABASE '/tmp/hindsight-export'", "IMPORT"),
    "attach": ("ATTACH '/tmp/hindsight.duckdb' AS x", "ATTACH"),
    "attach-memory": ("ATTACH ':memory:' AS x", "ATTACH"),
    "detach": ("DETACH x", "DETACH"),
    "use": ("USE x", "USE"),
    "pragma": ("PRAGMA enable_external_access", "PRAGMA"),
    "set": ("SET enable_external_access = true", "SET"),
    "reset": ("RESET lock_configuration", "RESET"),
    "install": ("INSTALL httpfs", "INSTALL"),
    "force-install": ("FORCE INSTALL httpfs", "FORCE"),
    "load": ("LOAD httpfs", "LOAD"),
    "update-extensions": ("UPDATE EXTENSIONS", "UPDATE"),
    "call": ("CALL duckdb_settings()", "CALL"),
    "checkpoint": ("CHECKPOINT", "CHECKPOINT"),
    "vacuum": ("VACUUM", "VACUUM"),
    "begin": ("BEGIN TRANSACTION", "BEGIN"),
    "prepare": ("PREPARE p AS SELECT 1", "PREPARE"),
    "execute": ("EXECUTE p", "EXECUTE"),
    "with-insert": ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "INSERT"),
    "explain-analyze-copy": ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'", "EXPLAIN of COPY"),
    "explain-create": ("EXPLAIN CREATE TABLE u AS SELECT 1", "EXPLAIN of CREATE"),
    "commented-copy": ("/* SELECT */ COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
    "pivot": ("PIVOT t ON a", "PIVOT"),
}

ALLOWED = {
    "select": "SELECT 1",
    "with": "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
    "values": "VALUES (1), (2)",
    "from-first": "FROM t",
    "union": "(SELECT 1) UNION ALL (SELECT 2)",
    "describe": "DESCRIBE t",
    "show": "SHOW t",
    "show-tables": "SHOW TABLES",
    "summarize": "SUMMARIZE t",
    "explain": "EXPLAIN SELECT * FROM t",
    "explain-analyze": "EXPLAIN ANALYZE SELECT * FROM t",
    "explain-options": "EXPLAIN (FORMAT json) SELECT 1",
    "comments": "-- the count\n/* of t */ SELECT count(*) FROM t",
    "trailing-semicolon": "SELECT 1;",
}


@pytest.fixture
def connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INT)")
    return con


@pytest.mark.parametrize(("sql", "name"), REFUSED.values(), ids=REFUSED.keys())
def test_every_other_statement_is_refused_by_name(
    connection: duckdb.DuckDBPyConnection, sql: str, name: str
) -> None:
    with pytest.raises(ConfigError, match="read-only") as refused:
        check_statement(connection, sql)
    assert f"{name} is not allowed" in str(refused.value), refused.value


@pytest.mark.parametrize("sql", ALLOWED.values(), ids=ALLOWED.keys())
def test_queries_are_allowed(connection: duckdb.DuckDBPyConnection, sql: str) -> None:
    statement = check_statement(connection, sql)
    connection.execute(statement).fetchall()


def test_one_statement_at_a_time(connection: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ConfigError, match="one statement at a time; got 2"):
        check_statement(connection, "SELECT 1; COPY t TO '/tmp/x.csv'")


# ------------------------------------------------------------ the locked connection alone
def test_the_locked_connection_reads_only_allowed_directories(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "history", tmp_path / "outside.txt"
    allowed.mkdir()
    (allowed / "ok.txt").write_text("fine")
    outside.write_text("secret")
    con = duckdb.connect()
    lock_down(con, [allowed])
    assert con.sql(f"SELECT content FROM read_text('{allowed}/ok.txt')").fetchall() == [("fine",)]
    for sql in (
        f"SELECT * FROM read_text('{outside}')",
        f"SELECT * FROM read_text('{allowed}/../outside.txt')",
        f"SELECT * FROM read_text('{allowed}-x/ok.txt')",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM glob('/*')",
        f"COPY (SELECT 1) TO '{tmp_path}/written.csv'",
        f"ATTACH '{tmp_path}/x.duckdb' AS x",
    ):
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql)
    assert not (tmp_path / "written.csv").exists() and not (tmp_path / "x.duckdb").exists()


def test_the_locked_connection_cannot_be_unlocked() -> None:
    con = duckdb.connect()
    lock_down(con)
    for sql in ("SET enable_external_access = true", "RESET lock_configuration",
                "SET allowed_directories = ['/']", "SET threads = 1"):  # fmt: skip
        with pytest.raises(duckdb.Error, match="locked"):
            con.execute(sql)


def test_the_locked_connection_still_writes_an_allowed_directory(tmp_path: Path) -> None:
    """Why the statement filter is needed too: DuckDB lets COPY reach an allowed directory."""
    con = duckdb.connect()
    lock_down(con, [tmp_path])
    try:
        con.execute(f"COPY (SELECT 1) TO '{tmp_path}/written.csv'")
    except duckdb.PermissionException:
        pytest.skip("this DuckDB refuses writes to allowed directories as well")
    assert (tmp_path / "written.csv").exists()


# ---------------------------------------------------------------- both, in the engine
def test_the_engine_reads_no_file_outside_the_history(history_repo: Built, tmp_path: Path) -> None:
    root = history_repo.repo.root
    (tmp_path / "outside.txt").write_text("secret")
    with QueryEngine(history_repo.repo) as engine:
        for sql in (
            "SELECT * FROM read_text('/etc/passwd')",
            f"SELECT * FROM read_text('{tmp_path}/outside.txt')",
            f"SELECT * FROM read_text('{root}/repository.json')",
            f"SELECT * FROM read_blob('{root}/history/../keys.json')",
            f"SELECT * FROM read_csv('{root}/journal/manifest.json')",
            "SELECT * FROM glob('/*')",
        ):
            with pytest.raises(ConfigError, match="Permission"):
                list(engine.sql(sql))
        assert len(list(engine.sql("SELECT * FROM events"))) == len(history_repo.events)


def test_the_engine_writes_nothing_even_into_the_history(history_repo: Built) -> None:
    history = history_repo.repo.root / "history"
    before = sorted(p.name for p in history.iterdir())
    with QueryEngine(history_repo.repo) as engine:
        for sql in (
            f"COPY (SELECT 1) TO '{history}/x.parquet'",
            f"COPY events TO '{history}/00000000000000999999.parquet'",
            f"ATTACH '{history}/x.duckdb' AS x",
            f"EXPORT DATABASE '{history}/dump'",
            f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{history}/y.csv'",
            "INSTALL httpfs",
            "SET enable_external_access = true",
        ):
            with pytest.raises(ConfigError, match="read-only"):
                engine.sql(sql)
    assert sorted(p.name for p in history.iterdir()) == before
