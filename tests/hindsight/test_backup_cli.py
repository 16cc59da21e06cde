"""``hindsight backup ...`` end to end: create, list, show, verify, delete, prune, storage.

Also with the daemon running: it holds the journal's writer lock, so the commands that write
ask it to do the work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hindsight.cli.main import main
from tests.daemon_process import hindsight, running_daemon


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


@pytest.fixture
def app(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A protected tree and an initialised config and repository in ``workdir``."""
    tree = workdir / "app"
    (tree / "kb").mkdir(parents=True)
    (tree / "config.py").write_text("DEBUG = False\n")
    (tree / ".env").write_text("API_KEY=sk-very-secret\n")
    (tree / "kb" / "conocimiento_consolidado.json").write_text('{"faq": []}\n')
    assert main(["init", "--protect", str(tree)]) == 0
    capsys.readouterr()
    return tree


def test_full_then_incremental_with_the_briefs_metadata(
    app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, full = run_json(capsys, "backup", "create", "--full")
    assert code == 0, full
    meta = full["backup"]
    assert meta["type"] == "full" and meta["scope"] == ["mongodb", "filesystem", "config"]
    assert meta["files"]["count"] == 3, meta
    assert meta["verification"]["verified"] is True, "verified right after the backup"
    assert full["captured"]["new"] == 3, "files were captured first (no daemon running)"
    (app / "config.py").write_text("DEBUG = True\n")
    code, incremental = run_json(capsys, "backup", "create", "--incremental")
    assert code == 0
    meta = incremental["backup"]
    assert meta["type"] == "incremental" and meta["files"] == {"count": 1, "total_size": 13}
    code, config_only = run_json(capsys, "backup", "create", "--scope", "config")
    assert config_only["backup"]["files"]["count"] == 2, "config.py and .env"
    assert "sk-very-secret" not in json.dumps([full, incremental, config_only])


def test_first_incremental_is_taken_as_full_and_says_so(
    app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["backup", "create", "--incremental"]) == 0
    out = capsys.readouterr().out
    assert "Created full backup" in out and "no full backup to build on yet" in out, out


def test_list_filters_and_show(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, a = run_json(capsys, "backup", "create")
    _, b = run_json(capsys, "backup", "create", "--incremental")
    ids = [a["backup"]["backup_id"], b["backup"]["backup_id"]]
    assert [m["backup_id"] for m in run_json(capsys, "backup", "list")[1]] == ids
    assert len(run_json(capsys, "backup", "list", "--filter", "type=full")[1]) == 1
    assert len(run_json(capsys, "backup", "list", "--filter", "last_7_days")[1]) == 2
    assert len(run_json(capsys, "backup", "list", "--filter", "since=1h")[1]) == 2
    assert run_json(capsys, "backup", "list", "--filter", "since=2999-01-01T00:00:00Z")[1] == []
    code, shown = run_json(capsys, "backup", "show", ids[1])
    assert code == 0 and shown == b["backup"]
    assert main(["backup", "list"]) == 0
    out = capsys.readouterr().out
    assert ids[0] in out and "incremental" in out, out


@pytest.mark.parametrize(
    ("argv", "code", "fragment"),
    [
        (["backup", "show", "backup_19990101_000000"], 3, "no backup 'backup_19990101_000000'"),
        (["backup", "list", "--filter", "colour=red"], 2, "unknown filter 'colour=red'"),
        (["backup", "list", "--filter", "since=someday"], 2, "someday"),
        (["backup", "verify", "nope"], 3, "no backup 'nope'"),
    ],
    ids=["show-unknown", "bad-filter", "bad-since", "verify-unknown"],
)
def test_bad_input_is_a_clear_error(
    app: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, fragment: str
) -> None:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err, err


def test_verify_finds_a_damaged_snapshot_part(
    app: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, created = run_json(capsys, "backup", "create")
    backup_id = created["backup"]["backup_id"]
    assert main(["backup", "verify", backup_id, "--read-data"]) == 0
    assert "OK: no problems found" in capsys.readouterr().out
    part = sorted((workdir / "backups/snapshots/parts").glob("*.parquet"))[0]
    part.chmod(0o644)
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x40
    part.write_bytes(bytes(data))
    code, report = run_json(capsys, "backup", "verify", backup_id)
    assert code == 1 and not report["ok"]
    assert report["problems"][0]["path"] == f"snapshots/parts/{part.name}", report
    _, shown = run_json(capsys, "backup", "show", backup_id)
    assert shown["verification"]["verified"] is False, "the failed result is recorded"


def test_delete_refuses_a_base_then_force_and_prune(
    app: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, full = run_json(capsys, "backup", "create")
    _, inc = run_json(capsys, "backup", "create", "--incremental")
    full_id, inc_id = full["backup"]["backup_id"], inc["backup"]["backup_id"]
    assert main(["backup", "delete", full_id]) == 2
    err = capsys.readouterr().err
    assert f"is the base of incremental backup(s) {inc_id}" in err and "--force" in err, err
    code, dry = run_json(capsys, "backup", "delete", inc_id, "--dry-run")
    assert code == 0 and dry["dry_run"] and dry["backups_removed"] == [inc_id]
    assert len(run_json(capsys, "backup", "list")[1]) == 2, "a dry run deletes nothing"
    code, deleted = run_json(capsys, "backup", "delete", full_id, "--force")
    assert code == 0 and deleted["backups_removed"] == [full_id]
    assert [m["backup_id"] for m in run_json(capsys, "backup", "list")[1]] == [inc_id]
    code = main(["backup", "verify", inc_id, "--read-data"])
    assert code == 0, capsys.readouterr().out  # its base snapshot outlived the base's record
    capsys.readouterr()
    code, pruned = run_json(capsys, "backup", "prune", "--dry-run")
    assert code == 0 and pruned["backups_removed"] == [], "young backups are kept"


def test_storage_reports_kinds_ratios_and_quota(
    app: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "hindsight.toml"
    config.write_text(config.read_text().replace('max_size = ""', 'max_size = "10MB"'))
    run_json(capsys, "backup", "create")
    code, report = run_json(capsys, "backup", "storage")
    assert code == 0
    assert set(report["by_kind"]) == {"journal", "snapshots", "blobs", "history", "other"}
    assert report["by_kind"]["snapshots"] > 0 and report["quota_bytes"] == 10_000_000
    assert 0 < report["quota_used"] < 1 and report["over_quota"] is False
    assert main(["backup", "storage"]) == 0
    assert "Quota" in capsys.readouterr().out


def test_status_shows_backups_and_schedules(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_json(capsys, "backup", "create")
    code, status = run_json(capsys, "status")
    assert code == 0 and status["backups"]["count"] == 1
    jobs = {j["job"]: j for j in status["jobs"]}
    assert set(jobs) == {"full", "incremental", "verify", "prune"}, "scan is off by default"
    assert jobs["full"]["cron"] == "0 2 * * 0" and jobs["full"]["last"] is None


def test_commands_that_write_go_through_the_running_daemon(app: Path, workdir: Path) -> None:
    with running_daemon(workdir):
        for argv in (["--full"], ["--incremental"]):
            done = hindsight(workdir, "backup", "create", *argv, "--json")
            assert done.returncode == 0, done.stderr
            report = json.loads(done.stdout)
            assert report["via_daemon"] is True, report
        assert report["backup"]["type"] == "incremental"
        listed = hindsight(workdir, "backup", "list", "--json")
        full_id = json.loads(listed.stdout)[0]["backup_id"]
        refused = hindsight(workdir, "backup", "delete", full_id)
        assert refused.returncode == 2, "the daemon's refusal keeps its exit code"
        assert "is the base of incremental backup(s)" in refused.stderr, refused.stderr
        pruned = hindsight(workdir, "backup", "prune", "--json")
        assert pruned.returncode == 0 and json.loads(pruned.stdout)["via_daemon"], pruned.stderr


def test_over_quota_raises_an_alert_and_prunes_but_keeps_the_newest_full(
    app: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "hindsight.toml"
    config.write_text(config.read_text().replace('max_size = ""', 'max_size = "1KB"'))
    _, first = run_json(capsys, "backup", "create")
    assert first["notes"] and first["backup"]["backup_id"], "the first backup is still taken"
    (app / "config.py").write_text("DEBUG = True\n")
    code, second = run_json(capsys, "backup", "create")
    assert code == 0
    assert any(n.startswith("ALERT: the repository uses") for n in second["notes"]), second
    assert any("still over quota" in n for n in second["notes"]), "1 KB cannot be met"
    assert second["pruned"] is not None
    kept = [m["backup_id"] for m in run_json(capsys, "backup", "list")[1]]
    assert second["backup"]["backup_id"] in kept, "the newest full backup is never pruned"


def test_list_shows_the_readable_backups_when_one_record_is_damaged(
    app: Path, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, a = run_json(capsys, "backup", "create")
    _, b = run_json(capsys, "backup", "create", "--incremental")
    damaged = workdir / "backups/backups" / f"{a['backup']['backup_id']}.json"
    damaged.write_text(damaged.read_text().replace('"full"', '"fool"'))
    code = main(["backup", "list", "--json"])
    captured = capsys.readouterr()
    assert code == 1, "a damaged record is a finding"
    assert [m["backup_id"] for m in json.loads(captured.out)] == [b["backup"]["backup_id"]]
    assert "damaged backup record" in captured.err and "checksum" in captured.err, captured.err
