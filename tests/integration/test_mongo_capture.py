"""MongoDB capture against a real wire-protocol server (nx-27017) with real pymongo.

Each test compares the state the journal describes with what the server holds, byte for
byte, and checks that no change the server reported was journaled twice.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, InsertOne, MongoClient, ReplaceOne, UpdateOne
from pymongo.change_stream import ChangeStream
from pymongo.errors import OperationFailure

from capture.mongo_state import KnownMongo
from capture.mongodb import MongoCapture, MongoTarget
from journal.events import Op, Source
from journal.keys import MasterSecret
from journal.repository import Repository
from tests.integration.mongo_journal import (
    duplicates,
    journal_state,
    live_state,
    stream_positions,
)
from tests.integration.mongo_server import MongoServer

SECRET = MasterSecret(key=b"m" * 32, origin="test key")
DB = "chatbot"
COLLECTIONS = ("conversations", "conversaciones", "quotes", "cotizaciones", "users")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    Repository.init(tmp_path / "repo", SECRET)
    with Repository.open(tmp_path / "repo", SECRET, writable=True) as repository:
        yield repository


@pytest.fixture
def app(mongo_server: MongoServer) -> Iterator[MongoClient[dict[str, Any]]]:
    """The chatbot's own client (plain dict documents, as an application uses)."""
    with mongo_server.client() as client:
        yield client


_open: list[MongoCapture] = []


@pytest.fixture(autouse=True)
def _close_captures() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def capture_for(
    repo: Repository, server: MongoServer, cls: type[MongoCapture] = MongoCapture
) -> MongoCapture:
    """A capture resuming from what ``repo``'s journal records, as the daemon builds it;
    closed after the test."""
    known = KnownMongo()
    known.apply_all(repo.log.read())
    client: MongoClient[RawBSONDocument] = MongoClient(
        server.uri, document_class=RawBSONDocument, serverSelectionTimeoutMS=2000
    )
    capture = cls(
        MongoTarget("mongodb", (DB,), COLLECTIONS),
        client,
        repo.log,
        known.deployment("mongodb"),
        max_await_ms=50,
        reconcile_s=0.5,
    )
    _open.append(capture)
    return capture


def namespaces() -> list[str]:
    return [f"{DB}.{c}" for c in COLLECTIONS]


def assert_journal_matches_server(repo: Repository, server: MongoServer) -> None:
    events = list(repo.log.read())
    journal, live = journal_state(events), live_state(server.uri, namespaces())
    assert journal.keys() == live.keys(), f"collections: journal {journal.keys()}, live {live}"
    for ns, docs in live.items():
        missing = docs.keys() - journal[ns].keys()
        extra = journal[ns].keys() - docs.keys()
        assert not missing and not extra, f"{ns}: missing {sorted(missing)[:5]}, extra {extra}"
        wrong = [k for k, raw in docs.items() if journal[ns][k] != raw]
        assert not wrong, (
            f"{ns}: images differ for {wrong[:5]}: live {bson.decode(docs[wrong[0]])}, "
            f"journal {bson.decode(journal[ns][wrong[0]])}"
        )
    dup = duplicates(stream_positions(events))
    assert not dup, f"{len(dup)} change events journaled twice"


def rich_document(i: int) -> dict[str, Any]:
    return {
        "_id": ObjectId(),
        "session": f"wa-{i}",
        "created": datetime.datetime(2026, 11, 30, 12, 0, i % 60, 123000),
        "messages": [{"role": "user", "text": "hola ¿precio?", "n": i}],
        "total": 1.5 * i,
        "big": 2**40 + i,
        "flags": [True, None],
    }


def test_initial_sync_then_every_kind_of_change_lands_with_exact_images(
    repo: Repository, mongo_server: MongoServer, app: MongoClient[dict[str, Any]]
) -> None:
    db = app[DB]
    db.conversations.insert_many([rich_document(i) for i in range(50)])
    db.quotes.insert_many([{"_id": 1, "n": "int id"}, {"_id": "uno", "n": "str id"}])
    capture = capture_for(repo, mongo_server)
    first = capture.sync()
    assert first.initial_sync and first.documents_copied == 52, first
    assert_journal_matches_server(repo, mongo_server)

    db.conversations.insert_one(rich_document(99))
    db.conversations.update_one({"session": "wa-1"}, {"$set": {"total": 0}})
    # _id given: nx-27017 stores a replacement without one with _id last, unlike MongoDB
    replaced = db.conversations.find_one({"session": "wa-2"})
    assert replaced is not None
    db.conversations.replace_one(
        {"_id": replaced["_id"]}, {"_id": replaced["_id"], "session": "wa-2", "replaced": True}
    )
    db.conversations.delete_one({"session": "wa-3"})
    db.quotes.update_one({"_id": 1}, {"$push": {"lines": {"sku": "A", "qty": 2}}})
    db.cotizaciones.insert_many([{"_id": i, "folio": f"C-{i}"} for i in range(10_000)])
    db.quotes.bulk_write(
        [
            InsertOne({"_id": "u1", "name": "Ana"}),
            InsertOne({"_id": "u2", "name": "Luis"}),
            UpdateOne({"_id": "u1"}, {"$set": {"vip": True}}),
            ReplaceOne({"_id": "u2"}, {"_id": "u2", "name": "Luis M."}),
            DeleteOne({"_id": "u1"}),
        ]
    )
    with app.start_session() as session, session.start_transaction():
        db.conversations.insert_one({"_id": "t1", "estado": "abierta"}, session=session)
        db.quotes.update_one({"_id": "uno"}, {"$set": {"n": "in txn"}}, session=session)

    db.create_collection("conversaciones")  # new since the last capture: copied, then streamed
    db.conversaciones.insert_one({"_id": "nueva"})

    second = capture_for(repo, mongo_server).sync()
    assert not second.initial_sync
    assert_journal_matches_server(repo, mongo_server)
    new_collection = [e for e in repo.log.read() if e.namespace == f"{DB}.conversaciones"]
    assert [e.key for e in new_collection].count("collection") == 1, "metadata recorded once"
    quotes = [e for e in repo.log.read() if e.namespace == f"{DB}.quotes" and e.position][-7:]
    # nx-27017 reports a replace as an update (a whole after-image either way)
    ops = ["REPLACE" if e.op is Op.UPDATE and e.key == '"u2"' else e.op.value for e in quotes]
    assert [(e.key, op) for e, op in zip(quotes, ops, strict=True)] == [
        ('{"$numberInt": "1"}', "UPDATE"),
        ('"u1"', "INSERT"),
        ('"u2"', "INSERT"),
        ('"u1"', "UPDATE"),
        ('"u2"', "REPLACE"),
        ('"u1"', "DELETE"),
        ('"uno"', "UPDATE"),
    ], "the bulk write and the transaction arrive as change events, in order"
    streamed = [e for e in repo.log.read() if e.position and e.namespace.endswith("versations")]
    ops = [e.op for e in streamed]
    assert ops[:2] == [Op.INSERT, Op.UPDATE] and Op.DELETE in ops, ops
    assert all(e.after is None for e in streamed if e.op is Op.DELETE)


def test_a_restart_resumes_after_the_last_journaled_change(
    repo: Repository, mongo_server: MongoServer, app: MongoClient[dict[str, Any]]
) -> None:
    app[DB].conversations.insert_one({"_id": 0})
    capture_for(repo, mongo_server).sync()
    for round_ in range(3):
        app[DB].conversations.insert_many([{"_id": f"{round_}-{i}"} for i in range(100)])
        summary = capture_for(repo, mongo_server).sync()
        assert summary.events >= 100 and not summary.initial_sync, summary
    assert_journal_matches_server(repo, mongo_server)


def test_collection_options_and_indexes_are_recorded_and_kept_current(
    repo: Repository, mongo_server: MongoServer, app: MongoClient[dict[str, Any]]
) -> None:
    app[DB].quotes.insert_one({"_id": 1, "folio": "A"})
    app[DB].quotes.create_index([("folio", 1)], unique=True)
    capture_for(repo, mongo_server).sync()
    app[DB].quotes.create_index([("cliente", 1), ("fecha", 1)])  # nx-27017 drops -1
    capture_for(repo, mongo_server).sync()

    markers = [
        bson.decode(e.after)
        for e in repo.log.read()
        if e.key == "collection" and e.namespace == f"{DB}.quotes" and isinstance(e.after, bytes)
    ]
    assert len(markers) == 2, "recorded at the initial sync, and again when an index was added"
    first, latest = ({tuple(i["key"].items()): i for i in m["indexes"]} for m in markers)
    assert first[(("folio", 1),)].get("unique") is True
    assert (("cliente", 1), ("fecha", 1)) in latest and len(latest) == 3
    assert "options" in markers[0]


def test_dropped_and_renamed_collections_are_found_by_reconciling(
    repo: Repository, mongo_server: MongoServer, app: MongoClient[dict[str, Any]]
) -> None:
    db = app[DB]
    db.quotes.insert_many([{"_id": i, "v": i} for i in range(20)])
    db.conversations.insert_many([{"_id": i, "m": "x"} for i in range(5)])
    capture_for(repo, mongo_server).sync()
    db.quotes.drop()  # nx-27017 sends no drop event: only reconciling can see it
    db.command("renameCollection", f"{DB}.conversations", to=f"{DB}.conversaciones")
    summary = capture_for(repo, mongo_server).sync()

    assert summary.dropped == 2, summary
    events = list(repo.log.read())
    drop = next(e for e in events if e.namespace == f"{DB}.quotes" and e.op is Op.DELETE)
    assert drop.key == "" and (drop.meta or {}).get("detected") == "reconcile"
    before_drop = journal_state(e for e in events if e.seq < drop.seq)
    assert len(before_drop[f"{DB}.quotes"]) == 20, "the dropped collection is restorable"
    assert_journal_matches_server(repo, mongo_server)


class HistoryLostOnce(MongoCapture):
    """Raises the server's real ChangeStreamHistoryLost once, when asked to resume."""

    lost = False

    def _open_stream(
        self, scope: str, resume_after: Mapping[str, Any] | None, *, start_after: bool = False
    ) -> ChangeStream[RawBSONDocument]:
        if resume_after is not None and not HistoryLostOnce.lost:
            HistoryLostOnce.lost = True
            raise OperationFailure(
                "Resume of change stream was not possible, as the resume point may no longer "
                "be in the oplog.",
                code=286,
                details={"code": 286, "codeName": "ChangeStreamHistoryLost"},
            )
        return super()._open_stream(scope, resume_after, start_after=start_after)


def test_lost_history_records_a_gap_raises_an_alert_and_syncs_afresh(
    repo: Repository, mongo_server: MongoServer, app: MongoClient[dict[str, Any]]
) -> None:
    app[DB].conversations.insert_many([{"_id": i} for i in range(10)])
    capture_for(repo, mongo_server).sync()
    app[DB].conversations.insert_many([{"_id": i} for i in range(10, 31)])
    app[DB].conversations.delete_one({"_id": 30})  # deleted within the lost history
    capture = capture_for(repo, mongo_server, HistoryLostOnce)
    summary = capture.sync()

    assert summary.initial_sync and summary.documents_copied == 30, summary
    assert capture.status.alerts and "history lost" in capture.status.alerts[0]
    events = list(repo.log.read())
    gaps = [e for e in events if e.op is Op.GAP]
    assert len(gaps) == 1 and "286" in (gaps[0].meta or {})["reason"]
    markers = [e.key for e in events if e.op is Op.MARKER and e.seq > gaps[0].seq]
    assert markers[0] == "sync-start" and "sync-end" in markers, markers
    assert_journal_matches_server(repo, mongo_server)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_server_stop_and_restart_mid_stream_recovers_by_itself(
    repo: Repository, mongo_server: MongoServer
) -> None:
    with mongo_server.client() as app:
        app[DB].conversations.insert_one({"_id": "before"})
    capture = capture_for(repo, mongo_server)
    stop = threading.Event()
    thread = threading.Thread(target=capture.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: capture.status.state == "streaming", "streaming")
        with mongo_server.client() as app:
            app[DB].conversations.insert_many([{"_id": i} for i in range(200)])
        mongo_server.stop()
        wait_for(lambda: capture.status.state == "down", "the outage to show", 30)
        assert thread.is_alive(), "capture must never crash on a disconnect"
        mongo_server.start()
        with mongo_server.client() as app:
            app[DB].conversations.insert_many([{"_id": i} for i in range(200, 400)])
        keys = {bson.encode({"_id": i}) for i in range(400)}

        def captured() -> bool:
            state = journal_state(repo.log.read()).get(f"{DB}.conversations", {})
            return len(state) == len(keys) + 1

        wait_for(captured, "every insert after the restart", 30)
        assert capture.status.state == "streaming"
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert_journal_matches_server(repo, mongo_server)


def test_stop_during_streaming_flushes_everything_seen(
    repo: Repository, mongo_server: MongoServer, app: MongoClient[dict[str, Any]]
) -> None:
    capture = capture_for(repo, mongo_server)
    capture.sync()
    stop = threading.Event()
    thread = threading.Thread(target=capture.run, args=(stop,))
    thread.start()
    wait_for(lambda: capture.status.state == "streaming", "streaming")
    app[DB].users.insert_many([{"_id": i} for i in range(500)])
    wait_for(lambda: capture.status.events >= 500, "events")
    app[DB].users.update_one({"_id": 1}, {"$set": {"seen": True}})
    wait_for(lambda: capture.status.last_change_us > 0, "a streamed change")
    stop.set()
    thread.join(10)
    assert 0 <= capture.status.lag_s < 30, capture.status
    assert_journal_matches_server(repo, mongo_server)
    assert all(
        (e.meta or {}).get("deployment") == "mongodb"
        for e in repo.log.read()
        if e.source is Source.MONGODB
    )
