"""``hindsight recover scan | duplicates`` end to end, through the CLI."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hindsight.cli.main import main
from tests.capture.test_git import Work

BRIEF_KEYS = {"scan_id", "timestamp", "sources", "lost_files", "recommendations"}


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def _tree(app: Path) -> None:
    (app / "src").mkdir(parents=True, exist_ok=True)
    (app / "conocimiento_consolidado.json").write_text('{"faq": [{"q": "hola"}]}\n')
    (app / "config.py").write_text("DEBUG = False\n")
    (app / "src" / "bot.py").write_text("print('hi')\n")
    (app / "src" / "copy.py").write_text("print('hi')\n")


def test_an_undamaged_system_scans_clean(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(workdir / "app")
    assert main(["init", "--protect", str(workdir / "app")]) == 0
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    code, report = run_json(capsys, "recover", "scan")
    assert code == 0, report
    assert set(report) >= BRIEF_KEYS, set(report)
    assert report["scan_id"].startswith("scan_") and len(report["scan_id"]) == 20
    assert report["lost_files"] == [] and report["corrupted_files"] == []
    assert report["recommendations"] == [] and report["findings"] == []
    fs = report["sources"]["filesystem"]
    assert {k: fs[k] for k in ("files_scanned", "files_found", "files_missing")} == {
        "files_scanned": 4,
        "files_found": 4,
        "files_missing": 0,
    }
    assert set(report["sources"]["mongodb"]) >= {
        "connected",
        "collections_found",
        "collections_missing",
        "total_documents",
    }
    assert main(["recover", "scan"]) == 0
    assert "Nothing lost or corrupted." in capsys.readouterr().out


def test_lost_files_from_the_journal_and_from_git_and_their_fixes(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = Work(workdir / "project")
    app = work.top / "app"
    _tree(app)
    work.write("app/kb_populated_old.json", b'{"old": true}\n')
    work.write("app/src/removed.py", b"x = 1\n")
    work.git("add", "-A")
    commit = work.commit("the chatbot")
    work.git("rm", "--quiet", "app/src/removed.py")
    work.commit("removed on purpose")
    (app / "kb_populated_old.json").unlink()  # lost before Hindsight protected the tree
    assert main(["init", "--protect", str(app)]) == 0
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    _, listed = run_json(capsys, "backup", "list")
    backup_id = listed[0]["backup_id"]
    (app / "conocimiento_consolidado.json").unlink()

    code, report = run_json(capsys, "recover", "scan")
    assert code == 2, report
    lost = {f["path"]: f for f in report["lost_files"]}
    assert set(lost) == {"conocimiento_consolidado.json", "kb_populated_old.json"}, lost
    kb = lost["conocimiento_consolidado.json"]
    assert kb["type"] == "knowledge_base" and kb["recoverable_from"][0] == backup_id
    assert kb["last_seen"].endswith("Z")
    from_git = lost["kb_populated_old.json"]
    assert from_git["recoverable_from"] == [f"git:{commit}"], from_git
    assert report["sources"]["git"]["files_only_in_git"] == 1
    assert report["sources"]["filesystem"]["files_missing"] == 2
    assert len(report["recommendations"]) == 2
    code, only_git = run_json(capsys, "recover", "scan", "--source", "git")
    assert code == 2 and [f["path"] for f in only_git["lost_files"]] == ["kb_populated_old.json"]

    for fix in (kb["recommendation"], from_git["recommendation"]):
        argv = shlex.split(fix)
        if argv[0] == "hindsight":
            assert main(argv[1:]) == 0, fix
        else:
            subprocess.run(argv, check=True, capture_output=True)
    capsys.readouterr()
    assert (app / "kb_populated_old.json").read_text() == '{"old": true}\n'
    code, report = run_json(capsys, "recover", "scan")
    assert code == 0, report["findings"]


def test_sources_can_be_chosen_and_cloud_says_it_is_not_built(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _tree(workdir / "app")
    assert main(["init", "--protect", str(workdir / "app")]) == 0
    assert main(["backup", "create"]) == 0
    (workdir / "app" / "config.py").unlink()
    capsys.readouterr()
    code, report = run_json(capsys, "recover", "scan", "--source", "cloud")
    assert code == 0, report
    assert report["sources"]["cloud"] == {
        "available": False,
        "message": report["sources"]["cloud"]["message"],
    }
    assert "not built yet" in report["sources"]["cloud"]["message"]
    assert not report["sources"]["filesystem"]["scanned"]
    code, report = run_json(capsys, "recover", "scan", "--source", "filesystem")
    assert code == 2 and [f["path"] for f in report["lost_files"]] == ["config.py"]
    assert "cloud" not in report["sources"]
    assert main(["recover", "scan", "--source", "cloud"]) == 0
    assert "not built yet" in capsys.readouterr().out


def test_deep_scan_and_duplicates(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(workdir / "app")
    assert main(["init", "--protect", str(workdir / "app")]) == 0
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    code, report = run_json(capsys, "recover", "scan", "--deep")
    assert code == 0 and report["sources"]["filesystem"]["deep"] is True
    code, dups = run_json(capsys, "recover", "duplicates")
    assert code == 0, dups
    assert [g["paths"] for g in dups["groups"]] == [["app/src/bot.py", "app/src/copy.py"]]
    assert dups["files_hashed"] == 0, "every file is as captured: the journal's hashes serve"
    assert main(["recover", "duplicates"]) == 0
    assert "app/src/copy.py" in capsys.readouterr().out
