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

from compaction.backup_maker import Scope
from hindsight.backup_service import BackupService
from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.recovery_service import RecoveryService, Target
from hindsight.wiring import open_repository
from restore.files import Strategy
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
        items = {(i["action"], i["key"]) for i in plan["document_items"]}
        assert items == {
            ("overwrite", '{"$numberInt": "1"}'),
            ("create", '"two"'),
            ("delete", '"new"'),
        }, items
        assert plan["document_bytes"]["create"] > 0

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


def _listing(root: Path) -> dict[str, bytes]:
    """The protected tree and the repository (the test server's own files are left out:
    the database is compared through the server)."""
    files = [p for d in ("app", "backups") for p in sorted((root / d).rglob("*")) if p.is_file()]
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}


def _first_backup(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, str]:
    """``workdir/app`` holding ``config.py`` (``A = 1``), protected with the test server's
    documents; the id of their first (full) backup."""
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("A = 1\n")
    assert main(["init", "--protect", str(app), "--mongodb", mongo_server.uri]) == 0
    assert main(["backup", "create"]) == 0
    capsys.readouterr()
    _, listed = run_json(capsys, "backup", "list")
    return app, str(listed[0]["backup_id"])


def test_a_dry_run_writes_nothing_at_all(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with mongo_server.client() as client:
        client.chatbot.sessions.insert_many([{"_id": i, "n": i} for i in range(10)])
        app, backup_id = _first_backup(workdir, mongo_server, capsys)
        (app / "config.py").write_text("A = 2\n")
        client.chatbot.sessions.delete_many({"n": {"$gt": 4}})
        before = (_listing(workdir), exact(mongo_server, "chatbot", "sessions"))
        code, plan = run_json(capsys, "recover", "restore", backup_id, "--dry-run")
        assert code == 0 and plan["documents"]["mongodb"]["chatbot.sessions"]["create"] == 5
        after = (_listing(workdir), exact(mongo_server, "chatbot", "sessions"))
    changed = {k for k in before[0].keys() | after[0].keys() if before[0].get(k) != after[0].get(k)}
    assert not changed, f"files written by a dry run: {sorted(changed)}"
    assert after[1] == before[1], "the database is unchanged"


def test_rollback_returns_documents_and_files_to_just_before_the_restore(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with mongo_server.client() as client:
        quotes = client.chatbot.cotizaciones
        quotes.insert_many([{"_id": i, "v": 1} for i in range(20)])
        app, backup_id = _first_backup(workdir, mongo_server, capsys)
        # nx-27017 compares ``_id`` ranges as text ("10" < "5"): name the documents
        quotes.update_many({"_id": {"$in": [0, 1, 2, 3, 4]}}, {"$set": {"v": 2}})
        quotes.delete_many({"_id": {"$in": [15, 16, 17, 18, 19]}})
        quotes.insert_one({"_id": "late", "v": 3})
        (app / "config.py").write_text("A = 2\n")
        before = (exact(mongo_server, "chatbot", "cotizaciones"), (app / "config.py").read_text())

        code, done = run_json(capsys, "recover", "restore", backup_id)
        assert code == 0, done
        assert (app / "config.py").read_text() == "A = 1\n"
        assert exact(mongo_server, "chatbot", "cotizaciones") != before[0]
        quotes.update_one({"_id": 10}, {"$set": {"v": 9}})  # after the restore: not its doing

        code, undone = run_json(capsys, "recover", "rollback", done["operation_id"])
        assert code == 0, undone
        after = exact(mongo_server, "chatbot", "cotizaciones")
    assert (app / "config.py").read_text() == before[1]
    ten = bson.encode({"_id": 10})
    assert {k: v for k, v in after.items() if k != ten} == {
        k: v for k, v in before[0].items() if k != ten
    }, "every document the restore touched is as it was just before it"
    assert RawBSONDocument(after[ten])["v"] == 9, "a document the restore left alone is kept"


def test_a_failure_part_way_rolls_back_documents_too(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    app = workdir / "app"
    app.mkdir()
    for name in ("config.py", "package.json"):
        (app / name).write_text(f"{name} v1\n")
    with mongo_server.client() as client:
        users = client.chatbot.users
        users.insert_many([{"_id": i, "v": 1} for i in range(10)])
        assert main(["init", "--protect", str(app), "--mongodb", mongo_server.uri]) == 0
        config = load_config(workdir / "hindsight.toml")
        with open_repository(config, writable=True) as repo:
            backup = BackupService(config, repo).create("full", Scope()).backup
            users.update_many({}, {"$set": {"v": 2}})
            users.insert_one({"_id": 99, "v": 2})
            (app / "package.json").write_text("package.json v2\n")
            BackupService(config, repo).capture_now(Scope())
            before = exact(mongo_server, "chatbot", "users")
            with RecoveryService(config, repo) as service:
                target = Target(backup_id=backup.id)
                _, plan = service.plan(target)
                broken = next(i for i in plan.items if i.path == "package.json")
                real = repo.blobs.opened

                def damaged(blob_id: str):  # type: ignore[no-untyped-def]
                    if broken.image is not None and blob_id == broken.image.blob:
                        raise FileNotFoundError(2, "pack gone", "blobs/packs/x.pack")
                    return real(blob_id)

                repo.blobs.opened = damaged  # type: ignore[method-assign]
                op, report = service.restore(target, plan, Strategy.OVERWRITE, options={})
                record = service.status(op.id)
        after = exact(mongo_server, "chatbot", "users")
    assert record["status"] == "failed" and "package.json" in " ".join(record["errors"])
    assert report["documents"]["mongodb"]["written"]["chatbot.users"] == 10, "it had written"
    assert after == before, "the documents it wrote are rolled back, the one it deleted is back"


def test_key_restores_only_the_named_documents(
    workdir: Path, mongo_server: MongoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    oid = ObjectId()
    with mongo_server.client() as client:
        sessions = client.chatbot.sessions
        sessions.insert_many([{"_id": 5, "v": 1}, {"_id": "5x", "v": 1}, {"_id": oid, "v": 1}])
        assert main(["init", "--mongodb", mongo_server.uri]) == 0
        assert main(["backup", "create", "--scope", "mongodb"]) == 0
        capsys.readouterr()
        _, listed = run_json(capsys, "backup", "list")
        sessions.update_many({}, {"$set": {"v": 2}})
        code, done = run_json(
            capsys, "recover", "restore", listed[0]["backup_id"], "--selective", "sessions",
            "--key", "5", "--key", f'{{"$oid": "{oid}"}}',
        )  # fmt: skip
        assert code == 0, done
        values = {d["_id"]: d["v"] for d in sessions.find()}
    assert values == {5: 1, "5x": 2, oid: 1}, "only the two named documents came back"
    assert main(["recover", "preview", listed[0]["backup_id"], "--key", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--key nope: no such document" in err and "Traceback" not in err, err


@pytest.mark.parametrize("strategy", ["skip", "overwrite", "merge", "rename", "prompt"])
def test_every_conflict_strategy_for_documents(
    workdir: Path, mongo_server: MongoServer, strategy: str
) -> None:
    """A document changed after the last capture is a conflict; each strategy decides it."""
    with mongo_server.client() as client:
        users = client.chatbot.users
        users.insert_many([{"_id": 1, "a": 1, "b": 1}, {"_id": 2, "a": 1}])
        assert main(["init", "--mongodb", mongo_server.uri]) == 0
        config = load_config(workdir / "hindsight.toml")
        with open_repository(config, writable=True) as repo:
            backup = BackupService(config, repo).create("full", Scope(("mongodb",))).backup
            users.update_one({"_id": 1}, {"$set": {"a": 2}})
            users.update_one({"_id": 2}, {"$set": {"a": 2}})
            BackupService(config, repo).capture_now(Scope(("mongodb",)))
            users.update_one({"_id": 1}, {"$set": {"b": 9}})  # not captured: a conflict
            with RecoveryService(config, repo) as service:
                target = Target(backup_id=backup.id)
                _, plan = service.plan(target)
                counts = service.documents["mongodb"].counts["chatbot.users"]
                assert (counts["conflict"], counts["overwrite"]) == (1, 1), counts
                settled: list[int] = []
                _, report = service.restore(
                    target, plan, Strategy(strategy), options={}, progress=settled.append
                )
                assert sum(settled) == 2, f"progress covers every planned document: {settled}"
        docs = {d["_id"]: {k: v for k, v in d.items() if k != "_id"} for d in users.find()}
    expected_one = {
        "skip": {"a": 2, "b": 9},
        "overwrite": {"a": 1, "b": 1},
        "merge": {"a": 1, "b": 9},  # the captured change undone, the uncaptured one kept
        "rename": {"a": 2, "b": 9},  # documents have no "beside": kept as live
        "prompt": {"a": 2, "b": 9},  # no prompt per document: skipped
    }[strategy]
    assert docs == {1: expected_one, 2: {"a": 1}}, docs
    result = report["documents"]["mongodb"]
    skipped = result["skipped"].get("chatbot.users", 0)
    assert skipped == (0 if strategy in ("overwrite", "merge") else 1), result
    if strategy == "merge":
        assert list(result["merged"]) == ['chatbot.users {"$numberInt": "1"}'], result
