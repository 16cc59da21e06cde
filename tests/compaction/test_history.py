"""History export: sealed segments' event metadata as Parquet, in every encryption mode."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bson
import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compaction.history
from compaction.history import HISTORY_SCHEMA, INDEX_FILE, HistoryExport, history_file_name
from journal.errors import ConfigError
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.log import Durability
from journal.repository import MODE_ALL, MODE_NONE, MODE_SECRETS, Repository
from tests.journal.eventgen import conversation, events

MODES = [MODE_ALL, MODE_SECRETS, MODE_NONE]
SEG1, SEG2 = "00000000000000000001.seg", "00000000000000000007.seg"


def _key() -> MasterSecret:
    return MasterSecret(key=os.urandom(32), origin="test key")


def _open(path: Path, mode: str) -> Repository:
    """A new, writable repository of ``mode`` (a "secrets" one opened without its key)."""
    key = _key() if mode != MODE_NONE else None
    Repository.init(path, key, encrypt_all=mode == MODE_ALL)
    return Repository.open(
        path, key if mode == MODE_ALL else None, writable=True, durability=Durability.NONE
    )


@pytest.fixture(params=MODES)
def repo(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Repository]:
    """An empty writable repository in each encryption mode."""
    with _open(tmp_path / "repo", request.param) as opened:
        yield opened


def _file(i: int, **kw: Any) -> FileImage:
    fields: dict[str, Any] = {
        "blob": f"{i:064x}",
        "size": 100 + i,
        "sha256": hashlib.sha256(str(i).encode()).hexdigest(),
        "mode": 0o100644,
        "mtime_ns": 1_700_000_000_000_000_000 + i,
    }
    return FileImage(**(fields | kw))


def _mixed() -> list[ChangeEvent]:
    """Documents, files (a secret, a symlink, a move), a system marker: every column used."""
    fs, mongo = Source.FILESYSTEM, Source.MONGODB
    ts = 1_764_000_000_000_000
    deployment = {"deployment": "prod"}
    return [
        conversation(1)._replace(meta=deployment, txn="txn-1"),
        conversation(2)._replace(meta=deployment, txn="txn-1"),
        ChangeEvent(mongo, "chatbot.conversaciones", '"x"', Op.DELETE, ts + 3, meta=deployment),
        ChangeEvent(fs, "home", "a/b.txt", Op.CREATE, ts + 4, after=_file(4)),
        ChangeEvent(fs, "home", ".env", Op.MODIFY, ts + 5, after=_file(5, sha256="")),
        ChangeEvent(fs, "home", "link", Op.CREATE, ts + 6, after=_file(6, blob="", size=7)),
        ChangeEvent(fs, "home", "c.txt", Op.MOVE, ts + 7, after=_file(7), meta={"old_path": "b"}),
        ChangeEvent(fs, "home", "c.txt", Op.DELETE, ts + 8),
        ChangeEvent(Source.SYSTEM, "system", "scan", Op.MARKER, ts + 9, meta={"root": "home"}),
        ChangeEvent(mongo, "db.c", '{"$oid": "1"}', Op.INSERT, ts + 10, after=bson.encode({})),
    ]


def _fill(repo: Repository) -> list[ChangeEvent]:
    """Two sealed segments (seq 1-6 in two batches, 7-9) and an active one (10); as read back."""
    mixed = _mixed()
    repo.log.append(mixed[:3])
    repo.log.append(mixed[3:6])
    repo.log.seal()
    repo.log.append(mixed[6:9])
    repo.log.seal()
    repo.log.append(mixed[9:])
    return list(repo.log.read())


def _expected(event: ChangeEvent, segment: str) -> dict[str, Any]:
    """The history row of ``event``, worked out independently of the module."""
    meta = event.meta or {}
    row: dict[str, Any] = {"size": None, "hash": None, "blob": None}
    if isinstance(event.after, FileImage):
        row = {"size": event.after.size, "hash": event.after.sha256, "blob": event.after.blob}
    elif event.after is not None:
        row = {"size": len(event.after), "hash": hashlib.sha256(event.after).hexdigest()}
        row["blob"] = None
    return row | {
        "seq": event.seq,
        "source_ts": event.source_ts,
        "capture_ts": event.capture_ts,
        "source": event.source.value,
        "deployment": meta.get("deployment"),
        "namespace": event.namespace,
        "key": event.key,
        "op": event.op.value,
        "txn": event.txn or None,
        "old_path": meta.get("old_path"),
        "segment": segment,
    }


def _rows(history: HistoryExport, file: str) -> list[dict[str, Any]]:
    table = pa.Table.from_batches(list(history.store.batches(file)), schema=HISTORY_SCHEMA)
    for name in ("source_ts", "capture_ts"):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, name, table.column(name).cast(pa.int64()))
    return list(table.to_pylist())


def test_export_writes_one_file_per_sealed_segment_matching_its_events(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compaction.history, "BATCH_ROWS", 4)  # several row groups per file
    journal = _fill(repo)
    history = HistoryExport.of(repo)

    report = history.export()

    assert [f.segment for f in report.files] == [SEG1, SEG2], "the active segment is not exported"
    assert [(f.first_seq, f.last_seq, f.rows) for f in report.files] == [(1, 6, 6), (7, 9, 3)]
    assert report.ok and report.events == 9
    assert history.files() == report.files
    for entry, (first, last) in zip(history.files(), [(1, 6), (7, 9)], strict=True):
        assert entry.file == history_file_name(entry.segment)
        want = [_expected(e, entry.segment) for e in journal[first - 1 : last]]
        assert _rows(history, entry.file) == want, f"{entry.file} differs from the journal"
    with history.store.open(report.files[0].file) as reader:
        assert reader.num_row_groups == 2, "export streams BATCH_ROWS events at a time"
        assert reader.schema_arrow.field("source").type == pa.dictionary(pa.int32(), pa.string())
    assert history.verify() == []


def test_export_is_idempotent_and_picks_up_new_seals(repo: Repository) -> None:
    _fill(repo)
    history = HistoryExport.of(repo)
    first = history.export()
    index = (repo.root / INDEX_FILE).read_bytes()
    stats = [(repo.root / f.file).stat().st_mtime_ns for f in first.files]

    again = history.export()

    assert again.files == [] and again.ok, "a second export writes nothing"
    assert (repo.root / INDEX_FILE).read_bytes() == index
    assert [(repo.root / f.file).stat().st_mtime_ns for f in first.files] == stats
    repo.log.seal()
    progress: list[tuple[int, int]] = []
    report = history.export(lambda done, total: progress.append((done, total)))
    assert [f.first_seq for f in report.files] == [10]
    assert progress == [(1, 1)]


def test_empty_journal_exports_nothing(repo: Repository) -> None:
    history = HistoryExport.of(repo)
    assert history.export().files == []
    assert history.files() == [] and history.verify() == []


def test_plain_history_is_read_by_duckdb(tmp_path: Path) -> None:
    with _open(tmp_path / "repo", MODE_SECRETS) as repo:
        _fill(repo)
        history = HistoryExport.of(repo)
        history.export()
        pattern = repo.root / "history" / "*.parquet"
        summary = duckdb.execute(
            "select count(*), min(seq), max(seq), count(distinct segment) "
            f"from read_parquet('{pattern}')"
        ).fetchall()
        moves = duckdb.execute(
            f"select key, old_path from read_parquet('{pattern}') where op = 'MOVE'"
        ).fetchall()
    assert summary == [(9, 1, 9, 2)]
    assert moves == [("c.txt", "b")]


def test_encrypted_history_is_sealed_and_its_index_names_no_content(tmp_path: Path) -> None:
    with _open(tmp_path / "repo", MODE_ALL) as repo:
        _fill(repo)
        history = HistoryExport.of(repo)
        history.export()
        index = (repo.root / INDEX_FILE).read_text()
        for entry in history.files():
            assert (repo.root / entry.file).read_bytes()[:4] == b"HSSF", "sealed, not PAR1"
    for secret in ("chatbot", "home", "a/b.txt", "prod", "txn-1"):
        assert secret not in index, f"the index leaks {secret!r}"


def test_crash_mid_write_leaves_no_file_under_the_final_name(
    repo: Repository, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(repo)
    history = HistoryExport.of(repo)
    read_batches = repo.log.read_batches

    def crashing(start: int = 1, end: int | None = None) -> Iterator[list[ChangeEvent]]:
        yield from read_batches(start, end)
        if start == 7:
            raise RuntimeError("crash while writing the second file")

    monkeypatch.setattr(repo.log, "read_batches", crashing)
    with pytest.raises(RuntimeError, match="crash"):
        history.export()

    assert sorted(p.name for p in (repo.root / "history").iterdir()) == [
        "00000000000000000001.parquet",
        "LOCK",
        "index.json",
    ], "no half file, no temporary file"
    assert [f.segment for f in history.files()] == [SEG1]
    monkeypatch.undo()
    assert [f.segment for f in history.export().files] == [SEG2]
    assert history.verify() == []


def test_export_deletes_what_a_crash_left(repo: Repository) -> None:
    _fill(repo)
    history = HistoryExport.of(repo)
    history.export()
    folder = repo.root / "history"
    leftovers = [folder / "00000000000000000099.parquet", folder / ".1234.abcd.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")

    history.export()

    assert not any(path.exists() for path in leftovers)
    assert history.verify() == []


def test_export_reports_a_damaged_segment_and_goes_on(repo: Repository) -> None:
    _fill(repo)
    segment = repo.root / "journal" / SEG1
    data = bytearray(segment.read_bytes())
    data[-20] ^= 0xFF
    segment.chmod(0o644)
    segment.write_bytes(bytes(data))
    history = HistoryExport.of(repo)

    report = history.export()

    assert [f.segment for f in report.files] == [SEG2]
    assert [p.path for p in report.problems] == [f"journal/{SEG1}"], report.problems
    assert not (repo.root / history_file_name(SEG1)).exists()


def test_verify_reports_damaged_and_missing_files(repo: Repository) -> None:
    _fill(repo)
    history = HistoryExport.of(repo)
    first, second = history.export().files
    damaged = repo.root / first.file
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x01
    damaged.write_bytes(bytes(data))
    (repo.root / second.file).unlink()

    problems = history.verify()

    assert [(p.path, p.reason) for p in problems] == [
        (first.file, "SHA-256 differs from the manifest (the file was altered or damaged)"),
        (second.file, "missing"),
    ]


def test_verify_decodes_a_sealed_file_whose_index_entry_was_forged(tmp_path: Path) -> None:
    with _open(tmp_path / "repo", MODE_ALL) as repo:
        _fill(repo)
        history = HistoryExport.of(repo)
        entry = history.export().files[0]
        path = repo.root / entry.file
        data = bytearray(path.read_bytes())
        data[100] ^= 0x01
        path.write_bytes(bytes(data))
        doc = json.loads((repo.root / INDEX_FILE).read_text())
        doc["files"][0]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
        (repo.root / INDEX_FILE).write_text(json.dumps(doc))

        problems = history.verify()

    assert [p.path for p in problems] == [entry.file]
    assert "authenticate" in problems[0].reason, problems


def test_verify_reports_a_malformed_index(repo: Repository) -> None:
    history = HistoryExport.of(repo)
    (repo.root / "history").mkdir()
    (repo.root / INDEX_FILE).write_text('{"format": 1, "files": [{"segment": "../x"}]}')
    assert [p.path for p in history.verify()] == [INDEX_FILE]


def test_remove_forgets_then_deletes(repo: Repository) -> None:
    _fill(repo)
    history = HistoryExport.of(repo)
    first, second = history.export().files

    assert history.remove([SEG1]) == [first]
    assert history.files() == [second]
    assert not (repo.root / first.file).exists()
    assert history.remove([SEG1]) == [], "removing twice is harmless"
    assert history.verify() == []
    with pytest.raises(ConfigError, match="not a segment name"):
        history.remove(["../repository.json"])


def test_remove_finishes_an_unlink_a_crash_interrupted(repo: Repository) -> None:
    _fill(repo)
    history = HistoryExport.of(repo)
    history.export()
    doc = json.loads((repo.root / INDEX_FILE).read_text())
    doc["files"] = doc["files"][1:]  # the index forgot SEG1; the crash came before the unlink
    (repo.root / INDEX_FILE).write_text(json.dumps(doc))

    assert history.remove([SEG1]) == []
    assert not (repo.root / history_file_name(SEG1)).exists()


def test_forget_before_removes_files_wholly_below_seq(repo: Repository) -> None:
    _fill(repo)
    history = HistoryExport.of(repo)
    history.export()

    assert history.forget_before(6) == []
    assert [f.segment for f in history.forget_before(7)] == [SEG1]
    assert [f.segment for f in history.files()] == [SEG2]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=12))
def test_any_events_round_trip(generated: list[ChangeEvent]) -> None:
    with tempfile.TemporaryDirectory() as tmp, _open(Path(tmp) / "repo", MODE_NONE) as repo:
        repo.log.append(generated)
        repo.log.seal()
        journal = list(repo.log.read())
        history = HistoryExport.of(repo)
        (entry,) = history.export().files
        assert _rows(history, entry.file) == [_expected(e, SEG1) for e in journal]
