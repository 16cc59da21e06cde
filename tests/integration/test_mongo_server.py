"""The nx-27017 harness: it answers, keeps data across restarts and crashes, and isolates."""

from __future__ import annotations

from pathlib import Path

from tests.integration.mongo_server import MongoServer


def test_ping_answers(mongo_server: MongoServer) -> None:
    with mongo_server.client() as client:
        assert client.admin.command("ping")["ok"] == 1


def test_data_survives_stop_and_start(mongo_server: MongoServer) -> None:
    port = mongo_server.port
    with mongo_server.client() as client:
        client.app.notes.insert_one({"_id": 1, "text": "before"})
    mongo_server.stop()
    assert not mongo_server.running, "stop() must leave no process behind"
    mongo_server.start()
    assert mongo_server.port == port, "start() must reuse the port"
    with mongo_server.client() as client:
        assert client.app.notes.find_one({"_id": 1}) == {"_id": 1, "text": "before"}


def test_start_after_kill(mongo_server: MongoServer) -> None:
    with mongo_server.client() as client:
        client.app.notes.insert_one({"_id": 1})
    mongo_server.kill()
    assert not mongo_server.running, "kill() must reap the process"
    mongo_server.start()
    with mongo_server.client() as client:
        assert client.app.notes.count_documents({}) == 1, "acknowledged write lost on SIGKILL"


def test_two_servers_are_isolated(tmp_path: Path) -> None:
    with MongoServer(tmp_path / "a") as first, MongoServer(tmp_path / "b") as second:
        assert first.port != second.port
        with first.client() as a, second.client() as b:
            a.app.notes.insert_one({"_id": "only in a"})
            assert b.app.notes.count_documents({}) == 0, "second server sees first's data"
            assert a.app.notes.count_documents({}) == 1
