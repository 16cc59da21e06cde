"""``QueryEngine``: the views return exactly what the repository holds, in every mode."""

from __future__ import annotations

import os
import random
from pathlib import Path

import bson
import pytest

from compaction.backup_maker import BackupMaker, Scope
from compaction.backups import BackupCatalog
from compaction.history import HISTORY_SCHEMA, HistoryExport
from compaction.snapshots import snapshots_of
from journal.errors import ConfigError, CorruptionError, HindsightError
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository
from query import VIEWS, QueryEngine, describe_views
from query.sources import tail_ranges
from query.views import EVENTS
from restore.operations import COMPLETED, OperationCatalog
from tests.query.conftest import T0, Built, at, build_history, mixed_events


def test_events_view_has_exactly_the_history_files_columns() -> None:
    assert EVENTS.names == HISTORY_SCHEMA.names, "docs/FORMAT.md's history table and the view"


def test_every_view_is_described_with_its_columns() -> None:
    described = describe_views()
    assert [v["name"] for v in described] == [v.name for v in VIEWS]
    for view in described:
        assert view["description"] and view["columns"], view
        assert all(c["name"] and c["type"] and c["doc"] for c in view["columns"]), view


def test_events_are_the_journal_exactly_history_plus_tail(history_repo: Built) -> None:
    """Three history files with one removed, a sealed unexported segment, an active one."""
    with QueryEngine(history_repo.repo) as engine:
        got = engine.sql("SELECT * FROM events ORDER BY seq").dicts()
    want = history_repo.oracle()
    assert len(got) == len(want) == 12 * 3 + 10 + 7
    for g, w in zip(got, want, strict=True):
        assert g == w, f"seq {w['seq']} differs"


def test_events_have_no_duplicates_and_no_gaps(history_repo: Built) -> None:
    with QueryEngine(history_repo.repo) as engine:
        count, distinct, low, high = next(
            iter(engine.sql("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events"))
        )
    assert count == distinct == high - low + 1 == len(history_repo.events), (count, distinct)


def test_events_can_be_scanned_twice_in_one_statement(history_repo: Built) -> None:
    """A self-join reads the history twice (a one-shot stream would come back empty)."""
    with QueryEngine(history_repo.repo) as engine:
        (pairs,) = next(iter(engine.sql("SELECT count(*) FROM events a JOIN events b USING (seq)")))
    assert pairs == len(history_repo.events)


def test_filters_and_projections_read_the_history(history_repo: Built) -> None:
    with QueryEngine(history_repo.repo) as engine:
        got = list(engine.sql("SELECT seq FROM events WHERE op = 'DELETE' ORDER BY seq"))
    assert [s for (s,) in got] == [e.seq for e in history_repo.events if e.op == Op.DELETE]


@pytest.mark.parametrize(
    ("covered", "first", "last", "want"),
    [
        ([], 1, 10, [(1, 10)]),
        ([(1, 10)], 1, 10, []),
        ([(1, 4), (8, 10)], 1, 12, [(5, 7), (11, 12)]),
        ([(1, 4)], 3, 9, [(5, 9)]),
        ([(5, 9)], 1, 3, [(1, 3)]),
        ([(1, 4)], 1, 0, []),
    ],
    ids=["no-history", "all-covered", "hole-and-end", "journal-pruned", "history-ahead", "empty"],
)
def test_tail_ranges(
    covered: list[tuple[int, int]], first: int, last: int, want: list[tuple[int, int]]
) -> None:
    assert tail_ranges(covered, first, last) == want


def test_an_empty_repository_has_empty_views(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret) as repo, QueryEngine(repo) as engine:
        for view in VIEWS:
            result = engine.sql(f"SELECT * FROM {view.name}")
            assert result.columns == view.names, view.name
            assert list(result) == [], view.name


def test_catalog_queries_never_read_the_journal(
    repo_path: Path, secret: MasterSecret | None
) -> None:
    """Damage in a segment no history covers: ``backups`` still answers, ``events`` says so."""
    with Repository.open(repo_path, secret, writable=True) as repo:
        repo.log.append(mixed_events(200, random.Random(1)))
        repo.log.seal()
        repo.log.append(mixed_events(3, random.Random(2)))
    segment = sorted((repo_path / "journal").glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    with Repository.open(repo_path, secret) as repo, QueryEngine(repo) as engine:
        assert list(engine.sql("SELECT count(*) FROM backups")) == [(0,)]
        with pytest.raises(HindsightError) as failure:
            list(engine.sql("SELECT count(*) FROM events"))
    assert not isinstance(failure.value, ConfigError), "damage is not a usage error"


def test_a_damaged_sealed_history_file_is_corruption(tmp_path: Path) -> None:
    secret = MasterSecret(key=os.urandom(32), origin="test")
    Repository.init(tmp_path / "repo", secret)
    with Repository.open(tmp_path / "repo", secret, writable=True) as repo:
        repo.log.append(mixed_events(300, random.Random(3)))
        repo.log.seal()
        (entry,) = HistoryExport.of(repo).export().files
    path = tmp_path / "repo" / entry.file
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF  # inside the first chunk
    path.write_bytes(bytes(data))
    with (
        Repository.open(tmp_path / "repo", secret) as repo,
        QueryEngine(repo) as engine,
        pytest.raises(CorruptionError) as failure,
    ):
        list(engine.sql("SELECT count(*), max(key) FROM events"))
    assert entry.file in str(failure.value), failure.value


def _documents_and_files(repo: Repository) -> list[bytes]:
    """Append documents and files (their contents in the blob store); the contents."""
    meta = {META_DEPLOYMENT: "mongodb"}
    events = [
        ChangeEvent(Source.MONGODB, "chat.quotes", f"q{i}", Op.INSERT, T0 + i,
                    bson.encode({"_id": i, "total": i * 10}), meta=meta)
        for i in range(5)
    ]  # fmt: skip
    contents = [f"file {i}\n".encode() * (i + 1) for i in range(3)]
    for i, content in enumerate(contents):
        ref = repo.blobs.put_bytes(content)
        image = FileImage(ref.id, ref.size, ref.sha256, 0o644, 1)
        events.append(ChangeEvent(Source.FILESYSTEM, "app", f"f{i}", Op.CREATE, T0 + 10 + i, image))
    repo.blobs.flush()
    repo.log.append(events)
    return contents


def test_snapshots_backups_and_blobs(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        contents = _documents_and_files(repo)
        snaps = snapshots_of(repo)
        cipher = repo.record_cipher
        backup = BackupMaker(repo, snaps, BackupCatalog(repo.root, repo.store, cipher)).full(
            Scope()
        )
    with Repository.open(repo_path, secret) as repo, QueryEngine(repo) as engine:
        (snap,) = engine.sql("SELECT * FROM snapshots").dicts()
        tables = engine.sql("SELECT * FROM snapshot_tables ORDER BY source").dicts()
        (record,) = engine.sql("SELECT * FROM backups").dicts()
        blobs = engine.sql("SELECT size, chunks FROM blobs ORDER BY size").dicts()
    assert snap["cut_seq"] == 8 and snap["tables"] == 2 and snap["rows"] == 8, snap
    assert snap["id"] == f"{8:020d}" and snap["previous"] is None
    assert [(t["source"], t["namespace"], t["rows"]) for t in tables] == [
        ("filesystem", "app", 3),
        ("mongodb", "chat.quotes", 5),
    ]
    assert record["backup_id"] == backup.id and record["type"] == "full", record
    assert record["collections"] == {"chat.quotes": 5} and record["files_count"] == 3
    assert record["verified"] is False and record["cut_seq"] == 8, record
    assert record["encrypted"] is (secret is not None)
    assert [b["size"] for b in blobs] == sorted(len(c) for c in contents), blobs


def test_recoveries_read_the_signed_records(repo_path: Path, secret: MasterSecret | None) -> None:
    with Repository.open(repo_path, secret, writable=True) as repo:
        cipher = repo.record_cipher
        catalog = OperationCatalog(repo.root, repo.store, cipher)
        options = {"scope": ["filesystem"], "paths": [], "keys": [], "at": "1h ago",
                   "to": None, "to_db": None, "to_collection": None, "dry_run": False,
                   "conflict": "overwrite"}  # fmt: skip
        op = catalog.new(None, options, before_seq=42)
        catalog.finish(op, COMPLETED, {"restored": 3, "failed": 1, "skipped": 2, "conflicts": 0},
                       ["app/x: permission denied"])  # fmt: skip
    with Repository.open(repo_path, secret) as repo, QueryEngine(repo) as engine:
        (row,) = engine.sql("SELECT * FROM recoveries").dicts()
    assert row["operation_id"] == op.id and row["status"] == "completed", row
    assert row["moment"] == "1h ago" and row["scope"] == ["filesystem"] and row["before_seq"] == 42
    assert (row["restored"], row["failed"], row["skipped"]) == (3, 1, 2), row
    assert row["errors"] == ["app/x: permission denied"] and row["target"] is None


def test_a_damaged_record_is_left_out_with_a_note(
    repo_path: Path, secret: MasterSecret | None
) -> None:
    (repo_path / "recoveries").mkdir()
    (repo_path / "recoveries" / "recover_20260101_000000.json").write_text("{not json")
    with Repository.open(repo_path, secret) as repo, QueryEngine(repo) as engine:
        assert list(engine.sql("SELECT * FROM recoveries")) == []
        assert any("recover_20260101_000000" in n for n in engine.notes), engine.notes


def test_times_are_utc(history_repo: Built) -> None:
    first = history_repo.events[0]
    with QueryEngine(history_repo.repo) as engine:
        (hour,) = next(iter(engine.sql("SELECT date_trunc('hour', source_ts) FROM events "
                                       "WHERE seq = 1")))  # fmt: skip
    assert hour == at(first.source_ts - first.source_ts % 3_600_000_000)


def test_bad_sql_is_a_config_error_naming_the_problem(history_repo: Built) -> None:
    with QueryEngine(history_repo.repo) as engine:
        with pytest.raises(ConfigError, match="nope"):
            engine.sql("SELECT nope FROM events")
        with pytest.raises(ConfigError, match="syntax error"):
            engine.sql("SELEC 1")
        with pytest.raises(ConfigError, match="no SQL statement"):
            engine.sql("  ;  ")
        assert list(engine.sql("SELECT 1")) == [(1,)], "the engine is usable after errors"


def test_history_files_the_index_does_not_name_are_not_read(history_repo: Built) -> None:
    """A crash can leave whole history files the index does not list: they are not events."""
    history = history_repo.repo.root / "history"
    indexed = sorted(history.glob("*.parquet"))[0]
    (history / "00000000000000999999.parquet").write_bytes(indexed.read_bytes())
    with QueryEngine(history_repo.repo) as engine:
        (count,) = next(iter(engine.sql("SELECT count(*) FROM events")))
    assert count == len(history_repo.events)


def test_a_repository_path_that_is_a_glob(tmp_path: Path) -> None:
    root = tmp_path / "odd[1]*"
    Repository.init(root, None)
    build_history(root, None)
    with Repository.open(root) as repo, QueryEngine(repo) as engine:
        got = [s for (s,) in engine.sql("SELECT seq FROM events ORDER BY seq")]
        assert got == [e.seq for e in repo.log.read()]
