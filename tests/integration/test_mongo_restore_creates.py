"""Creates are inserts of the exact bytes: a document that appears in the target between the
plan and the apply is a conflict decided by the strategy, never silently replaced or lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from compaction.snapshots import snapshots_of
from compaction.state_at import StateAt, state_at
from journal.canonical import canonical_key
from journal.events import ChangeEvent, Op, Source
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository
from restore.documents import DocResults, apply_documents, plan_documents
from restore.files import Strategy
from tests.conftest import new_key
from tests.integration.mongo_server import MongoServer

SOURCE, TARGET, DEPLOYMENT = "app.users", "restored.users", "main"


def _doc(i: int) -> bytes:
    return bson.encode({"_id": i, "name": f"user {i}", "n": i})


@pytest.fixture
def at(tmp_path: Path) -> Iterator[StateAt]:
    """The state after five inserts into ``app.users`` (documents 0 to 4)."""
    secret = new_key()
    Repository.init(tmp_path / "repo", secret)
    with Repository.open(tmp_path / "repo", secret, writable=True) as repo:
        repo.log.append(
            [
                ChangeEvent(
                    Source.MONGODB, SOURCE, canonical_key(i), Op.INSERT, 1, _doc(i),
                    meta={META_DEPLOYMENT: DEPLOYMENT},
                )
                for i in range(5)
            ]
        )  # fmt: skip
        yield state_at(snapshots_of(repo), repo.log, repo.log.next_seq - 1)


def _restore(
    server: MongoServer, at: StateAt, strategy: Strategy, meanwhile: Any, creates: int = 5
) -> DocResults:
    """Plan into ``restored.users``, let ``meanwhile(collection)`` run, then apply."""
    with server.client(document_class=RawBSONDocument) as client:
        plan = plan_documents(
            at, at, client, DEPLOYMENT, {SOURCE: TARGET}, in_place=False, metadata={}
        )
        assert plan.counts[TARGET]["create"] == creates, plan.counts
        meanwhile(client.restored.users)
        return apply_documents(plan, client, strategy)


def _live(server: MongoServer) -> dict[Any, bytes]:
    with server.client(document_class=RawBSONDocument) as client:
        return {d["_id"]: bytes(d.raw) for d in client.restored.users.find()}


def _someone_inserts_3(collection: Any) -> None:
    collection.insert_one(RawBSONDocument(bson.encode({"_id": 3, "name": "theirs"})))


def test_an_empty_target_gets_every_document_byte_for_byte(
    mongo_server: MongoServer, at: StateAt
) -> None:
    results = _restore(mongo_server, at, Strategy.SKIP, lambda _: None)
    assert _live(mongo_server) == {i: _doc(i) for i in range(5)}
    assert results.written == {TARGET: 5} and not results.failed and not results.skipped
    assert sorted(results.touched[TARGET]) == sorted(canonical_key(i) for i in range(5))


def test_a_create_that_meets_a_new_document_overwrites_it_under_overwrite(
    mongo_server: MongoServer, at: StateAt
) -> None:
    results = _restore(mongo_server, at, Strategy.OVERWRITE, _someone_inserts_3)
    assert _live(mongo_server) == {i: _doc(i) for i in range(5)}, "the restored version wins"
    assert results.written == {TARGET: 5} and not results.failed and not results.skipped
    assert canonical_key(3) in results.touched[TARGET], "a rollback must undo it"


@pytest.mark.parametrize(
    "strategy", [Strategy.SKIP, Strategy.RENAME, Strategy.MERGE, Strategy.PROMPT]
)
def test_a_create_that_meets_a_new_document_is_kept_and_counted_otherwise(
    mongo_server: MongoServer, at: StateAt, strategy: Strategy
) -> None:
    results = _restore(mongo_server, at, strategy, _someone_inserts_3)
    live = _live(mongo_server)
    assert RawBSONDocument(live.pop(3))["name"] == "theirs", "the live document is kept"
    assert live == {i: _doc(i) for i in (0, 1, 2, 4)}, "the others are restored"
    assert results.written == {TARGET: 4} and results.skipped == {TARGET: 1}, results
    assert not results.failed, results.failed
    assert canonical_key(3) not in results.touched[TARGET], "a rollback must leave it alone"


def test_a_unique_index_violation_is_a_failure_not_a_conflict(
    mongo_server: MongoServer, at: StateAt
) -> None:
    def taken(collection: Any) -> None:
        collection.create_index("name", unique=True)
        collection.insert_one({"_id": 99, "name": "user 2"})

    results = _restore(mongo_server, at, Strategy.SKIP, taken)
    assert list(results.failed) == [f"{TARGET} {canonical_key(2)}"], results.failed
    assert not results.skipped, "nothing was live under that _id: not a conflict"
    assert set(_live(mongo_server)) == {0, 1, 3, 4, 99}


def test_a_target_holding_other_documents_is_compared_and_the_same_holds(
    mongo_server: MongoServer, at: StateAt
) -> None:
    """Not the empty-target path: the plan looks documents up, and a create still inserts."""
    with mongo_server.client(document_class=RawBSONDocument) as client:
        client.restored.users.insert_one({"_id": 50, "name": "unrelated"})
        client.restored.users.insert_one(RawBSONDocument(_doc(1)))
    results = _restore(mongo_server, at, Strategy.SKIP, _someone_inserts_3, creates=4)
    live = _live(mongo_server)
    assert RawBSONDocument(live[3])["name"] == "theirs" and 50 in live
    assert {i: live[i] for i in (0, 1, 2, 4)} == {i: _doc(i) for i in (0, 1, 2, 4)}
    assert results.written == {TARGET: 3} and results.skipped == {TARGET: 1}, results


def test_a_create_that_meets_the_very_same_document_is_no_conflict(
    mongo_server: MongoServer, at: StateAt
) -> None:
    def same(collection: Any) -> None:
        collection.insert_one(RawBSONDocument(_doc(3)))

    results = _restore(mongo_server, at, Strategy.SKIP, same)
    assert _live(mongo_server) == {i: _doc(i) for i in range(5)}
    assert results.written == {TARGET: 4} and not results.skipped and not results.failed
    assert canonical_key(3) not in results.touched[TARGET], "it was not written: nothing to undo"
