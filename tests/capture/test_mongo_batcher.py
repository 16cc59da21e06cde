"""The batcher never splits a transaction across appends, and marks where each one ends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from capture.mongo_batcher import META_TXN_END, Batcher
from journal.events import ChangeEvent, Op, Source
from journal.repository import Repository


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    Repository.init(tmp_path / "repo", None)
    with Repository.open(tmp_path / "repo", None, writable=True) as repository:
        yield repository


def event(i: int, txn: str = "") -> ChangeEvent:
    return ChangeEvent(
        Source.MONGODB, "db.c", str(i), Op.INSERT, 1, after=b"\x05\x00\x00\x00\x00", txn=txn
    )


def appends(repo: Repository) -> list[list[str]]:
    """The events of each append, as their keys (one append of few events is one frame)."""
    return [[e.key for e in batch] for batch in repo.log.read_batches()]


def test_a_full_batch_keeps_back_the_transaction_still_arriving(repo: Repository) -> None:
    seen: list[Sequence[ChangeEvent]] = []
    batcher = Batcher(repo.log, seen.append, batch_events=4, flush_s=60)
    for i, txn in enumerate(["", "a", "b", "b"]):
        batcher.add(event(i, txn))
    assert appends(repo) == [["0", "1"]], "transaction b may go on: it waits"
    batcher.add(event(4, "b"))
    batcher.add(event(5, ""))
    batcher.flush(stream_dry=False)
    assert appends(repo) == [["0", "1"], ["2", "3", "4", "5"]]
    assert [len(s) for s in seen] == [2, 4]


def test_a_dry_stream_flushes_everything(repo: Repository) -> None:
    batcher = Batcher(repo.log, lambda _events: None, batch_events=100, flush_s=60)
    for i in range(3):
        batcher.add(event(i, "t"))
    assert batcher.flush(stream_dry=False) == 0, "the transaction may not be complete"
    assert batcher.flush(stream_dry=True) == 3
    assert appends(repo) == [["0", "1", "2"]]


def test_the_last_event_of_each_transaction_is_marked(repo: Repository) -> None:
    batcher = Batcher(repo.log, lambda _events: None)
    for i, txn in enumerate(["a", "a", "", "b", "c", "c"]):
        batcher.add(event(i, txn))
    batcher.flush(stream_dry=True)
    ends = [e.key for e in repo.log.read() if (e.meta or {}).get(META_TXN_END) == "1"]
    assert ends == ["1", "3", "5"]


def test_discard_forgets_what_was_not_appended(repo: Repository) -> None:
    batcher = Batcher(repo.log, lambda _events: None, batch_events=100, flush_s=60)
    batcher.add(event(0))
    batcher.discard()
    assert batcher.flush(stream_dry=True) == 0
    assert appends(repo) == []
