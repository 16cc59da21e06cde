"""Audit reports over a journal whose every event is known."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import bson
import pytest

from compaction.history import HistoryExport
from journal.errors import ConfigError
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository
from query import QueryEngine, Reports
from restore.operations import COMPLETED, FAILED, OperationCatalog

HOUR = 3_600_000_000
T10 = int(datetime(2026, 1, 5, 10, tzinfo=UTC).timestamp()) * 1_000_000  # 10:00 UTC
MONGO = {META_DEPLOYMENT: "main"}


def _doc(n: int) -> bytes:
    return bson.encode({"_id": n, "pad": "x" * n})


def _file(size: int) -> FileImage:
    return FileImage("b" * 64, size, "c" * 64, 0o644, 1)


def known_events() -> list[ChangeEvent]:
    """10:xx: 3 inserts and an update in chat.quotes, a file created; 11:xx: 2 updates in
    chat.users, a delete in chat.quotes (of q1, last written at 10:20 with 20 BSON bytes),
    a file deleted, a delete of a document never seen; markers throughout."""
    m, f = Source.MONGODB, Source.FILESYSTEM
    return [
        ChangeEvent(m, "chat.quotes", "q1", Op.INSERT, T10 + 1, _doc(1), meta=MONGO),
        ChangeEvent(m, "chat.quotes", "q2", Op.INSERT, T10 + 2, _doc(2), meta=MONGO),
        ChangeEvent(m, "chat.quotes", "q3", Op.INSERT, T10 + 3, _doc(3), meta=MONGO),
        ChangeEvent(Source.SYSTEM, "app", "scan", Op.MARKER, T10 + 4),
        ChangeEvent(m, "chat.quotes", "q1", Op.UPDATE, T10 + HOUR // 3, _doc(7), meta=MONGO),
        ChangeEvent(f, "app", "config.py", Op.CREATE, T10 + 5, _file(100)),
        ChangeEvent(m, "chat.users", "u1", Op.UPDATE, T10 + HOUR + 1, _doc(1), meta=MONGO),
        ChangeEvent(m, "chat.users", "u1", Op.REPLACE, T10 + HOUR + 2, _doc(2), meta=MONGO),
        ChangeEvent(m, "chat.quotes", "q1", Op.DELETE, T10 + HOUR + 3, meta=MONGO),
        ChangeEvent(f, "app", "config.py", Op.DELETE, T10 + HOUR + 4),
        ChangeEvent(m, "chat.quotes", "q9", Op.DELETE, T10 + HOUR + 5, meta=MONGO),
        ChangeEvent(Source.SYSTEM, "app", "scan", Op.MARKER, T10 + HOUR + 6),
    ]


@pytest.fixture
def reports(repo_path: Path, secret: MasterSecret | None) -> Iterator[Reports]:
    """The known events: the first half in a history file, the rest in the journal's tail."""
    events = known_events()
    with Repository.open(repo_path, secret, writable=True) as repo:
        repo.log.append(events[:6])
        repo.log.seal()
        HistoryExport.of(repo).export()
        repo.log.append(events[6:])
    with Repository.open(repo_path, secret) as repo, QueryEngine(repo) as engine:
        yield Reports(engine)


def test_changes_by_namespace(reports: Reports) -> None:
    rows = reports.changes().dicts()
    assert [(r["source"], r["deployment"], r["namespace"]) for r in rows] == [
        ("FILESYSTEM", None, "app"),
        ("MONGODB", "main", "chat.quotes"),
        ("MONGODB", "main", "chat.users"),
    ], "markers are not changes"
    counts = [(r["changes"], r["created"], r["modified"], r["deleted"], r["keys"]) for r in rows]
    assert counts == [(2, 1, 0, 1, 1), (6, 3, 1, 2, 4), (2, 0, 2, 0, 1)], counts


def test_changes_by_hour_day_and_source(reports: Reports) -> None:
    hours = reports.changes(by="hour").dicts()
    assert [(r["hour"].hour, r["changes"]) for r in hours] == [(10, 5), (11, 5)], hours
    (day,) = reports.changes(by="day").dicts()
    assert day["changes"] == 10 and day["day"].date().isoformat() == "2026-01-05", day
    sources = reports.changes(by="source").dicts()
    assert [(r["source"], r["changes"]) for r in sources] == [("FILESYSTEM", 2), ("MONGODB", 8)]


def test_changes_in_a_window(reports: Reports) -> None:
    (after,) = reports.changes(since=T10 + HOUR, by="day").dicts()
    assert after["changes"] == 5, "since is inclusive"
    (before,) = reports.changes(until=T10 + HOUR, by="day").dicts()
    assert before["changes"] == 5, "until is exclusive"
    assert reports.changes(since=T10 + 10 * HOUR).dicts() == []


def test_unknown_grouping_is_a_config_error(reports: Reports) -> None:
    with pytest.raises(ConfigError, match="grouping"):
        reports.changes(by="week")


def test_deletions_with_the_version_each_removed(reports: Reports) -> None:
    rows = reports.deletions().dicts()
    got = [(r["namespace"], r["key"], r["what"], r["last_size"]) for r in rows]
    assert got == [
        ("chat.quotes", "q1", "document", len(_doc(7))),
        ("app", "config.py", "file", 100),
        ("chat.quotes", "q9", "document", None),
    ], got
    assert rows[0]["last_written"] == datetime.fromtimestamp((T10 + HOUR // 3) / 1e6, UTC)
    assert rows[0]["time"] == datetime.fromtimestamp((T10 + HOUR + 3) / 1e6, UTC)
    assert [r["seq"] for r in rows] == [9, 10, 11]
    assert reports.deletions(since=T10 + HOUR + 4).dicts()[0]["key"] == "config.py"
    assert reports.deletions(until=T10 + HOUR).dicts() == []


def test_restores_oldest_first(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        cipher = repo.record_cipher
        catalog = OperationCatalog(repo.root, repo.store, cipher)
        options = {"scope": ["filesystem"], "to": "/tmp/out", "dry_run": False}
        first = catalog.new("backup_20260101_000000", options, before_seq=5)
        catalog.finish(first, COMPLETED, {"restored": 4, "failed": 0, "skipped": 1,
                                          "conflicts": 0}, [])  # fmt: skip
        second = catalog.new(None, {"at": "2026-01-05T10:00:00Z"}, before_seq=9)
        catalog.finish(second, FAILED, {"restored": 0, "failed": 2, "skipped": 0,
                                        "conflicts": 0}, ["a: x", "b: y"])  # fmt: skip
    with Repository.open(repo_path, secret) as repo, QueryEngine(repo) as engine:
        rows = Reports(engine).restores().dicts()
    assert [r["operation_id"] for r in rows] == [first.id, second.id]
    assert rows[0]["target"] == "/tmp/out" and rows[0]["restored"] == 4, rows[0]
    assert rows[1]["status"] == "failed" and rows[1]["errors"] == 2, rows[1]
    assert rows[1]["moment"] == "2026-01-05T10:00:00Z" and rows[1]["before_seq"] == 9


def test_storage_by_kind(reports: Reports) -> None:
    rows = {r["kind"]: r for r in reports.storage().dicts()}
    assert {"journal", "snapshots", "blobs", "history", "other", "total"} <= rows.keys()
    kinds = [r for k, r in rows.items() if k != "total"]
    assert rows["total"]["bytes"] == sum(r["bytes"] for r in kinds)
    assert rows["journal"]["items"] == 2 and rows["journal"]["events"] == 12, rows["journal"]
    assert rows["history"]["items"] == 1 and rows["history"]["events"] == 6, rows["history"]
    assert rows["history"]["bytes"] > 0 and abs(sum(r["share"] for r in kinds) - 1) < 0.01
