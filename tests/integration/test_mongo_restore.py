"""Restoring MongoDB documents on a real wire-protocol server (nx-27017), through the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Int64, ObjectId
from bson.raw_bson import RawBSONDocument

from hindsight.cli.main import main
from tests.integration.mongo_server import MongoServer


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def exact(server: MongoServer, db: str, coll: str) -> dict[bytes, bytes]:
    """Every document of a collection as exact BSON, keyed by its ``_id`` element's bytes."""
    with server.client(document_class=RawBSONDocument) as client:
        docs = list(client[db][coll].find())
    return {bson.encode({"_id": d["_id"]}): bytes(d.raw) for d in docs}


def test_restore_to_a_moment_in_place_and_into_another_database(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with mongo_server.client() as app:
        quotes = app.chatbot.cotizaciones
        quotes.insert_many(
            [
                {"_id": 1, "total": Int64(10), "items": ["a"], "z": 1, "a": 2},
                {"_id": "two", "total": 20.5},
                {"_id": ObjectId(), "nested": {"x": [1, {"y": None}]}},
            ]
        )
        assert main(["init", "--mongodb", mongo_server.uri]) == 0
        assert main(["backup", "create", "--scope", "mongodb"]) == 0
        capsys.readouterr()
        before = exact(mongo_server, "chatbot", "cotizaciones")
        moment = time.time()
        time.sleep(0.05)
        quotes.replace_one({"_id": 1}, {"_id": 1, "total": Int64(99)})
        quotes.delete_one({"_id": "two"})
        quotes.insert_one({"_id": "new", "total": 1})
        assert main(["backup", "create", "--scope", "mongodb"]) == 0
        capsys.readouterr()
        at = f"@{moment:.6f}"

        code, plan = run_json(capsys, "recover", "preview", "--at", at, "--selective", "mongodb")
        assert code == 0, plan
        counts = plan["documents"]["mongodb"]["chatbot.cotizaciones"]
        assert (counts["overwrite"], counts["create"], counts["delete"]) == (1, 1, 1), counts
        assert counts["identical"] == 1 and plan["items"] == [], "no files in this selection"

        code, copy = run_json(
            capsys, "recover", "restore", "--at", at, "--selective", "cotizaciones",
            "--to-db", "rescued",
        )  # fmt: skip
        assert code == 0, copy
        assert exact(mongo_server, "rescued", "cotizaciones") == before, "BSON-identical copy"
        assert exact(mongo_server, "chatbot", "cotizaciones") != before, "live untouched"

        code, done = run_json(capsys, "recover", "restore", "--at", at, "--selective", "mongodb")
        assert code == 0, done
        assert exact(mongo_server, "chatbot", "cotizaciones") == before, "restored in place"


def test_a_dropped_collection_comes_back_with_its_documents(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with mongo_server.client() as app:
        app.chatbot.users.insert_many([{"_id": i, "name": f"u{i}"} for i in range(50)])
        assert main(["init", "--mongodb", mongo_server.uri]) == 0
        assert main(["backup", "create", "--scope", "mongodb"]) == 0
        capsys.readouterr()
        before = exact(mongo_server, "chatbot", "users")
        _, listed = run_json(capsys, "backup", "list")
        backup_id = listed[0]["backup_id"]
        app.chatbot.drop_collection("users")
        code, done = run_json(capsys, "recover", "restore", backup_id, "--selective", "users")
        assert code == 0, done
        assert done["results"]["documents"]["mongodb"]["recreated"] == ["chatbot.users"]
    assert exact(mongo_server, "chatbot", "users") == before
