"""CLI commands that act are recorded in the audit trail, with who, what and the outcome."""

from __future__ import annotations

import getpass
from pathlib import Path

from hindsight.audit import audit_log
from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.wiring import open_repository


def test_acting_commands_are_recorded_and_reads_are_not(workdir: Path) -> None:
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("DEBUG = False\n")
    assert main(["init", "--protect", str(app)]) == 0
    assert main(["backup", "create"]) == 0
    assert main(["status"]) == 0
    assert main(["backup", "list"]) == 0
    assert main(["token", "create", "--role", "viewer", "--name", "grafana"]) == 0
    assert main(["backup", "delete", "backup_20000101_000000"]) != 0
    assert main(["recover", "restore", "--at", "now", "--dry-run"]) == 0
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config) as repo:
        entries = list(audit_log(repo).entries())
        problems = audit_log(repo).verify()
    assert [(e.action, e.outcome) for e in entries] == [
        ("backup create", "ok"),
        ("token create", "ok"),
        ("backup delete", "failed"),
    ], "reads and dry runs are not recorded"
    assert {e.actor for e in entries} == {f"cli:{getpass.getuser()}"}
    assert entries[1].target == "viewer"
    assert entries[2].target == "backup_20000101_000000"
    assert "no backup" in entries[2].details["exit"]
    assert problems == []
    assert main(["audit", "verify"]) == 0
