"""``hindsight sql`` end to end: table, --json, --csv, --views, and clear errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from hindsight.cli.main import main
from query.views import VIEWS
from tests.hindsight.apps import app_with_two_backups


@pytest.fixture(params=[False, True], ids=["plain", "encrypted"])
def app(workdir: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> Path:
    """A protected app with two backups: a file created, changed, one deleted, one added."""
    return app_with_two_backups(workdir, capsys, encrypt=request.param)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


FILE_EVENTS = "SELECT seq, op, key, size FROM events WHERE source = 'FILESYSTEM' ORDER BY seq"


def test_json_is_a_list_of_row_objects(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "sql", FILE_EVENTS, "--json")
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    got = [(r["op"], r["key"], r["size"]) for r in rows]
    assert got == [
        ("CREATE", "config.py", 14),
        ("CREATE", "kb/base_conocimiento_1.json", 12),
        ("MODIFY", "config.py", 13),
        ("CREATE", "package.json", 16),
        ("DELETE", "kb/base_conocimiento_1.json", None),
    ], got
    assert [r["seq"] for r in rows] == sorted(r["seq"] for r in rows)


def test_json_times_and_nested_values(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sql", "SELECT backup_id, timestamp, scope FROM backups", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 2, rows
    assert rows[0]["timestamp"].endswith("Z") and rows[0]["scope"] == [
        "mongodb",
        "filesystem",
        "config",
    ], rows[0]
    code, out, _ = run(capsys, "sql", "SELECT * FROM events WHERE false", "--json")
    assert code == 0 and json.loads(out) == []


def test_csv_has_a_header(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sql", FILE_EVENTS, "--csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["seq", "op", "key", "size"]
    assert len(rows) == 6 and ["DELETE", "kb/base_conocimiento_1.json", ""] in [
        r[1:] for r in rows
    ], rows


def test_table_for_people(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "sql", FILE_EVENTS)
    assert code == 0
    assert "kb/base_conocimiento_1.json" in out and "NULL" in out and "(5 rows)" in out, out


def test_long_tables_are_cut_but_counted(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "sql", "SELECT range AS n FROM range(1500)")
    assert code == 0 and "(1,500 rows; the first 1,000 shown" in out, out[-200:]
    code, out, _ = run(capsys, "sql", "SELECT range AS n FROM range(1500)", "--csv")
    assert out.count("\n") == 1501


def test_views_lists_every_view_and_column(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "sql", "--views", "--json")
    assert code == 0
    described = json.loads(out)
    assert [v["name"] for v in described] == [v.name for v in VIEWS]
    assert [c["name"] for c in described[0]["columns"]][:3] == ["seq", "source_ts", "capture_ts"]
    code, out, _ = run(capsys, "sql", "--views")
    assert code == 0 and all(f"{v.name}: " in out for v in VIEWS), out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["SELECT nope FROM events"], 'column "nope" not found'),
        (["SELEC 1"], "syntax error"),
        (["SELECT * FROM nothing"], "nothing does not exist"),
        (["COPY events TO 'out.csv'"], "read-only: COPY is not allowed"),
        (["INSTALL httpfs"], "read-only: INSTALL is not allowed"),
        (["ATTACH 'x.duckdb'"], "read-only: ATTACH is not allowed"),
        (["SELECT 1; SELECT 2"], "one statement at a time"),
        (["SELECT * FROM read_text('/etc/passwd')"], "Permission Error"),
        ([], "give a statement"),
        (["SELECT 1", "--json", "--csv"], "one of --json and --csv"),
    ],
    ids=[
        "column",
        "syntax",
        "table",
        "copy",
        "install",
        "attach",
        "two",
        "file",
        "none",
        "formats",
    ],
)
def test_errors_are_one_clear_line_and_exit_2(
    app: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    code, out, err = run(capsys, "sql", *argv)
    assert code == 2, (code, out, err)
    assert fragment in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (app.parent / "out.csv").exists() and not (app.parent / "x.duckdb").exists()
