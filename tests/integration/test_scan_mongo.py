"""``hindsight recover scan --source mongodb`` on a real wire-protocol server (nx-27017).

nx-27017 records writes for change streams only once a stream has been opened (the first
backup's capture opens it), sends no drop events (capture's reconciling records drops), and
compares ``_id`` ranges as text (so deletions select by ``$in``).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from compaction.backup_maker import Scope
from hindsight.backup_service import BackupService
from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.wiring import open_repository
from tests.integration.mongo_server import MongoServer


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def capture(workdir: Path) -> None:
    """Capture the databases now (what the daemon would do)."""
    config = load_config(workdir / "hindsight.toml")
    with open_repository(config, writable=True) as repo:
        BackupService(config, repo).capture_now(Scope(("mongodb",)))


def found(report: dict[str, Any]) -> dict[str, str]:
    return {f["path"]: f["kind"] for f in report["findings"]}


def test_dropped_collections_and_mass_deletions_are_found_and_fixed(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with mongo_server.client() as app:
        db = app.chatbot
        db.users.insert_many([{"_id": i, "name": f"u{i}"} for i in range(50)])
        db.sessions.insert_many([{"_id": i, "open": True} for i in range(200)])
        db.cotizaciones.insert_many([{"_id": i, "total": i} for i in range(30)])
        assert main(["init", "--mongodb", mongo_server.uri]) == 0
        assert main(["backup", "create", "--scope", "mongodb"]) == 0
        capsys.readouterr()
        _, listed = run_json(capsys, "backup", "list")
        backup_id = listed[0]["backup_id"]

        code, clean = run_json(capsys, "recover", "scan", "--source", "mongodb")
        assert code == 0, clean["findings"]
        assert clean["sources"]["mongodb"] == {
            "connected": True,
            "collections_found": 3,
            "collections_missing": 0,
            "total_documents": 280,
            "scanned": True,
        }

        db.drop_collection("users")
        db.sessions.delete_many({"_id": {"$in": list(range(150))}})
        db.cotizaciones.delete_many({"_id": {"$in": [1, 2]}})  # a few: no finding

        # not captured yet: the collection is missing, the count dropped
        code, report = run_json(capsys, "recover", "scan", "--source", "mongodb")
        assert code == 2
        assert found(report) == {
            "chatbot.users": "collection_missing",
            "chatbot.sessions": "count_drop",
        }, report["findings"]
        for f in report["findings"]:
            assert f["recoverable_from"][0] == backup_id, f
            assert f["type"] == "collection" and f["where"] == "mongodb"
        assert report["sources"]["mongodb"]["collections_missing"] == 1

        # captured: a recorded drop, and a bulk deletion within the window
        capture(workdir)
        code, report = run_json(capsys, "recover", "scan", "--source", "mongodb")
        assert code == 2
        assert found(report) == {
            "chatbot.users": "collection_missing",
            "chatbot.sessions": "bulk_delete",
        }, report["findings"]
        by_path = {f["path"]: f for f in report["findings"]}
        assert "captured at seq" in by_path["chatbot.users"]["reason"]
        assert "150 documents deleted" in by_path["chatbot.sessions"]["reason"]
        for f in report["findings"]:  # newest first: the moment just before the loss
            assert f["recoverable_from"][1:] == [backup_id], f
            assert f["recommendation"].startswith("hindsight recover restore --at "), f

        for f in report["findings"]:
            argv = shlex.split(f["recommendation"])
            assert argv[:3] == ["hindsight", "recover", "restore"], argv
            assert main(argv[1:]) == 0, f["recommendation"]
        capsys.readouterr()
        assert db.users.count_documents({}) == 50 and db.sessions.count_documents({}) == 200
        capture(workdir)
        code, report = run_json(capsys, "recover", "scan", "--source", "mongodb")
        assert code == 0, report["findings"]


def test_an_unreachable_deployment_is_reported_not_a_crash(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with mongo_server.client() as app:
        app.chatbot.users.insert_one({"_id": 1})
    assert main(["init", "--mongodb", mongo_server.uri]) == 0
    assert main(["backup", "create", "--scope", "mongodb"]) == 0
    capsys.readouterr()
    mongo_server.stop()
    code, report = run_json(capsys, "recover", "scan", "--source", "mongodb")
    assert code == 2
    assert report["sources"]["mongodb"]["connected"] is False
    assert [f["kind"] for f in report["findings"]] == ["unreachable"]
