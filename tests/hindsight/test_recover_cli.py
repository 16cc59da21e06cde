"""``hindsight recover preview | restore`` for files, end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.recovery_service import RecoveryService
from hindsight.timeparse import parse_time
from hindsight.wiring import open_repository
from journal.events import Op, Source
from journal.meta import META_OPERATION, RESTORE_START
from tests.daemon_process import hindsight, running_daemon


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
    assert code == 0 and dry == {**plan, "dry_run": True}
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


def backed_up_app(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    config_py: str,
    *,
    setting: tuple[str, str] | None = None,
) -> tuple[Path, str]:
    """A protected app holding ``config.py``, and the id of its first full backup;
    ``setting`` (old, new) is replaced in ``hindsight.toml`` first."""
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text(config_py)
    assert main(["init", "--protect", str(app)]) == 0
    if setting:
        toml = workdir / "hindsight.toml"
        assert setting[0] in toml.read_text()
        toml.write_text(toml.read_text().replace(*setting))
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    _, listed = run_json(capsys, "backup", "list")
    return app, str(listed[0]["backup_id"])


def test_every_restore_is_recorded_and_can_be_rolled_back(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app, backup_id = backed_up_app(workdir, capsys, "DEBUG = False\n")
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


def restore_markers(workdir: Path) -> list[tuple[int, str]]:
    """The ``restore-start`` markers in the journal: (seq, operation id)."""
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config) as repo:
        return [
            (e.seq, (e.meta or {})[META_OPERATION])
            for batch in repo.log.read_batches(repo.log.first_seq)
            for e in batch
            if e.source is Source.SYSTEM and e.op is Op.MARKER and e.key == RESTORE_START
        ]


def test_the_restore_start_marker_precedes_every_write_with_or_without_the_daemon(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app, backup_id = backed_up_app(workdir, capsys, "A = 1\n")
    (app / "config.py").write_text("A = 2\n")

    code, done = run_json(capsys, "recover", "restore", backup_id)
    assert code == 0 and (app / "config.py").read_text() == "A = 1\n", done
    markers = restore_markers(workdir)
    assert [op for _, op in markers] == [done["operation_id"]]
    config = load_config(workdir / "hindsight.toml")
    with RecoveryService(config, open_repository(config)) as service:
        op = service.operations.get(done["operation_id"])
        assert op.before_seq == markers[0][0], "the rollback's 'before' is the marker"
        assert service.operations.touched(op).files == ["app/config.py"]

    with running_daemon(workdir):
        (app / "config.py").write_text("A = 3\n")
        time.sleep(1.5)  # the daemon captures it
        restored = hindsight(workdir, "recover", "restore", backup_id, "--json")
        assert restored.returncode == 0, restored.stderr
        second = json.loads(restored.stdout)["operation_id"]
        assert (app / "config.py").read_text() == "A = 1\n"
        time.sleep(1.5)  # the daemon captures the restored file too
        undone = hindsight(workdir, "recover", "rollback", second, "--json")
        assert undone.returncode == 0, undone.stderr
        assert (app / "config.py").read_text() == "A = 3\n", "back to just before the restore"
    assert [op for _, op in restore_markers(workdir)] == [done["operation_id"], second]


def test_dry_run_by_default_restores_only_when_told(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app, backup_id = backed_up_app(
        workdir, capsys, "A = 1\n",
        setting=("dry_run_by_default = false", "dry_run_by_default = true"),
    )  # fmt: skip
    (app / "config.py").write_text("A = 2\n")
    assert main(["recover", "restore", backup_id]) == 0
    assert "Dry run: nothing was written" in capsys.readouterr().out
    assert (app / "config.py").read_text() == "A = 2\n"
    code, done = run_json(capsys, "recover", "restore", backup_id, "--no-dry-run")
    assert code == 0 and "operation_id" in done, done
    assert (app / "config.py").read_text() == "A = 1\n"
