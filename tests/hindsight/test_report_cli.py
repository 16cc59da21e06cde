"""``hindsight report changes | deletions | restores | storage`` end to end."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from hindsight.cli.main import main
from tests.hindsight.apps import app_with_two_backups


@pytest.fixture
def app(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Two backups: two files created, then one changed, one deleted and one added."""
    return app_with_two_backups(workdir, capsys)


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else captured.err


def test_changes_per_namespace_hour_and_source(
    app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, rows = run_json(capsys, "report", "changes")
    assert code == 0, rows
    assert rows == [
        {"source": "FILESYSTEM", "deployment": None, "namespace": "app", "changes": 5,
         "created": 3, "modified": 1, "deleted": 1, "keys": 3}
    ], rows  # fmt: skip
    code, hours = run_json(capsys, "report", "changes", "--by", "hour")
    assert code == 0 and sum(r["changes"] for r in hours) == 5, hours
    assert all(r["hour"].endswith(":00:00Z") for r in hours), hours
    code, later = run_json(capsys, "report", "changes", "--since", "2999-01-01T00:00:00Z")
    assert code == 0 and later == []
    code, earlier = run_json(capsys, "report", "changes", "--until", "2000-01-01", "--by", "day")
    assert code == 0 and earlier == []


def test_deletions_name_what_was_removed(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, rows = run_json(capsys, "report", "deletions", "--since", "1 hour ago")
    assert code == 0, rows
    assert [(r["key"], r["what"], r["last_size"]) for r in rows] == [
        ("kb/base_conocimiento_1.json", "file", 12)
    ], rows
    assert main(["report", "deletions"]) == 0
    out = capsys.readouterr().out
    assert "kb/base_conocimiento_1.json" in out and "12 B" in out and "(1 row)" in out, out


def test_restores_lists_recovery_operations(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, listed = run_json(capsys, "backup", "list")
    full = listed[0]["backup_id"]
    code, done = run_json(capsys, "recover", "restore", full, "--to", str(app.parent / "out"))
    assert code == 0, done
    code, rows = run_json(capsys, "report", "restores")
    assert code == 0 and len(rows) == 1, rows
    row = rows[0]
    assert row["operation_id"] == done["operation_id"] and row["status"] == "completed", row
    assert row["backup_id"] == full and row["target"] == str(app.parent / "out"), row
    assert row["restored"] == 2 and row["errors"] == 0, row


def test_storage_as_csv_and_table(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "storage", "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    kinds = {r["kind"]: r for r in rows}
    assert {"journal", "snapshots", "blobs", "history", "other", "total"} <= kinds.keys()
    assert int(kinds["total"]["bytes"]) == sum(int(r["bytes"]) for r in rows[:-1])
    assert kinds["snapshots"]["items"] == "1" and kinds["history"]["item"] == "files", kinds
    assert main(["report", "storage"]) == 0
    out = capsys.readouterr().out
    assert "journal" in out and "%" in out and "B" in out, out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["report", "changes", "--since", "someday"], "someday"),
        (["report", "deletions", "--until", "never"], "never"),
        (["report", "restores", "--json", "--csv"], "one of --json and --csv"),
    ],
    ids=["bad-since", "bad-until", "two-formats"],
)
def test_bad_options_are_clear_errors(
    app: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err
