"""``hindsight backup create --scope mongodb``: a one-shot sync with no daemon running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hindsight.cli.main import main
from tests.integration.mongo_server import MongoServer, free_port


def backup(capsys: pytest.CaptureFixture[str], *scope: str) -> tuple[int, dict[str, object]]:
    code = main(["backup", "create", *scope, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_one_shot_sync_copies_first_then_catches_up(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with mongo_server.client() as app:
        app.chatbot.cotizaciones.insert_many([{"_id": i, "total": i} for i in range(25)])
        assert main(["init", "--mongodb", mongo_server.uri]) == 0
        capsys.readouterr()
        code, first = backup(capsys, "--scope", "mongodb")
        assert code == 0
        captured = first["captured"]
        mongo = captured["mongodb"]["mongodb"]  # type: ignore[index]
        assert mongo["initial_sync"] and mongo["documents_copied"] == 25, first
        assert captured["roots"] == [], "files are out of scope"  # type: ignore[index]
        assert first["backup"]["collections"] == {"chatbot.cotizaciones": 25}, first

        app.chatbot.cotizaciones.delete_one({"_id": 3})
        code = main(["backup", "create", "--scope", "mongodb"])
        out = capsys.readouterr().out
    assert code == 0
    assert "MongoDB mongodb: caught up, 1 collections, 0 documents copied, 1 events" in out, out
    assert "Scanned" not in out


def test_bad_scope_is_a_usage_error(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init"]) == 0
    with pytest.raises(SystemExit) as exit_:
        main(["backup", "create", "--scope", "mongo"])
    assert exit_.value.code == 2
    assert "unknown scope mongo; use mongodb, filesystem, config" in capsys.readouterr().err


def test_unreachable_server_is_exit_6_and_never_shows_the_password(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = f"mongodb://backup:s3cr3t-pw@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=300"
    assert main(["init", "--mongodb", uri]) == 0
    capsys.readouterr()
    assert main(["backup", "create", "--scope", "mongodb"]) == 6
    captured = capsys.readouterr()
    assert "MongoDB mongodb cannot be reached" in captured.err, captured.err
    assert "s3cr3t-pw" not in captured.out + captured.err
    assert "Traceback" not in captured.err
