"""``hindsight recover preview | restore`` for files, end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hindsight.cli.main import main
from hindsight.timeparse import parse_time


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_preview_then_restore_in_place_and_to_a_directory(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = workdir / "app"
    (app / "kb").mkdir(parents=True)
    (app / "config.py").write_text("DEBUG = False\n")
    (app / "kb" / "base_conocimiento_1.json").write_text('{"faq": [1]}\n')
    assert main(["init", "--protect", str(app)]) == 0
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    moment = time.time()
    time.sleep(0.05)
    (app / "config.py").write_text("DEBUG = True\n")
    (app / "kb" / "base_conocimiento_1.json").unlink()
    (app / "kb" / "kb_populated_2.json").write_text("{}\n")
    assert main(["backup", "create", "--incremental"]) == 0
    capsys.readouterr()
    at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment))
    at += f".{int(moment % 1 * 1e6):06d}Z"
    assert parse_time(at) <= int(moment * 1e6)

    code, plan = run_json(capsys, "recover", "preview", "--at", at)
    assert code == 0 and plan["counts"]["overwrite"] == 1 and plan["counts"]["create"] == 1
    assert plan["counts"]["delete"] == 1, plan
    code, dry = run_json(capsys, "recover", "restore", "--at", at, "--dry-run")
    assert code == 0 and dry == plan
    assert (app / "config.py").read_text() == "DEBUG = True\n", "a dry run writes nothing"

    code, copy = run_json(capsys, "recover", "restore", "--at", at, "--to", str(workdir / "out"))
    assert code == 0 and not copy["results"]["failed"]
    assert (workdir / "out/app/config.py").read_text() == "DEBUG = False\n"
    assert (app / "config.py").read_text() == "DEBUG = True\n", "--to leaves the live tree alone"

    code, done = run_json(capsys, "recover", "restore", "--at", at, "--conflict", "overwrite")
    assert code == 0, done
    assert (app / "config.py").read_text() == "DEBUG = False\n"
    assert (app / "kb" / "base_conocimiento_1.json").read_text() == '{"faq": [1]}\n'
    assert not (app / "kb" / "kb_populated_2.json").exists()


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["recover", "preview"], "either a BACKUP_ID or --at TIME"),
        (
            ["recover", "preview", "--at", "1999-01-01T00:00:00Z"],
            "outside the point-in-time window",
        ),
        (["recover", "preview", "--at", "1h", "--selective", "nope"], "--selective nope"),
        (["recover", "preview", "backup_19990101_000000"], "no backup"),
    ],
    ids=["no-target", "outside-window", "bad-selective", "unknown-backup"],
)
def test_bad_targets_are_clear_errors(
    workdir: Path, capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str
) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "a.py").write_text("a\n")
    assert main(["init", "--protect", str(app)]) == 0
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    assert main(argv) in (2, 3)
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err


def test_every_restore_is_recorded_and_can_be_rolled_back(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(app)]) == 0
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    _, first = run_json(capsys, "backup", "list")
    backup_id = first[0]["backup_id"]  # type: ignore[index]
    (app / "config.py").write_text("DEBUG = True  # changed, never captured before\n")
    (app / "package.json").write_text('{"name": "bot"}\n')  # new, never captured either

    code, done = run_json(capsys, "recover", "restore", backup_id, "--conflict", "overwrite")
    assert code == 0, done
    assert (app / "config.py").read_text() == "DEBUG = False\n"
    assert not (app / "package.json").exists(), "captured first, then deleted as at the backup"
    op_id = done["operation_id"]
    code, history = run_json(capsys, "recover", "history")
    assert [r["operation_id"] for r in history] == [op_id]  # type: ignore[union-attr]
    code, record = run_json(capsys, "recover", "status", op_id)
    assert set(record) == {
        "operation_id", "backup_id", "status", "started_at", "completed_at", "options",
        "results", "errors",
    }  # fmt: skip
    assert record["status"] == "completed" and record["backup_id"] == backup_id
    assert record["results"]["restored"] == 2, record

    code, undone = run_json(capsys, "recover", "rollback", op_id)
    assert code == 0, undone
    assert (app / "config.py").read_text() == "DEBUG = True  # changed, never captured before\n"
    assert (app / "package.json").read_text() == '{"name": "bot"}\n', "brought back"
    assert main(["recover", "status", "recover_19990101_000000"]) == 3
    assert "recover history" in capsys.readouterr().err
