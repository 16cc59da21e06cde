"""Dropping the oldest sealed segments (``SegmentLog.drop_before``) through the public API:
what goes and what stays, readers of a journal that starts after seq 1, the manifest's
``first_seq`` and its MAC, and a crash at every step of a drop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from journal import pruning
from journal.errors import CorruptionError, RepositoryError
from journal.integrity import Problem
from journal.keys import MasterSecret
from journal.manifest import MANIFEST_KEY, Manifest, SegmentInfo
from journal.repository import Repository
from journal.stores.local import LocalStore
from journal.verify import verify_journal
from tests.journal.eventgen import conversation

SEGMENT_BYTES = 2500
BATCH = 10
TOTAL = 100


def _open(path: Path, secret: MasterSecret | None, **kw: Any) -> Repository:
    return Repository.open(path, secret, segment_max_bytes=SEGMENT_BYTES, **kw)


def _fill(repo: Repository, first: int, count: int) -> None:
    for start in range(first, first + count, BATCH):
        repo.log.append([conversation(i) for i in range(start, min(start + BATCH, first + count))])


@pytest.fixture
def filled(repo_path: Path, secret: MasterSecret | None) -> Path:
    """A repository holding events 1..TOTAL in several sealed segments and an active one."""
    with _open(repo_path, secret, writable=True) as repo:
        _fill(repo, 0, TOTAL)
        assert len(repo.log.manifest.segments) >= 4, "the tests need several sealed segments"
    return repo_path


def _keys(repo: Repository, start: int = 1) -> list[str]:
    return [e.key for e in repo.log.read(start)]


def _expected(first: int) -> list[str]:
    return [conversation(i - 1).key for i in range(first, TOTAL + 1)]


def _sealed(repo: Repository) -> list[tuple[int, int]]:
    return [(s.first_seq, s.last_seq) for s in repo.log.manifest.segments]


def test_drop_removes_the_sealed_prefix_only(filled: Path, secret: MasterSecret | None) -> None:
    with _open(filled, secret, writable=True) as repo:
        spans = _sealed(repo)
        cut = spans[2][0] + 1  # inside the third sealed segment: it must stay
        files_before = {p.name for p in (filled / "journal").iterdir()}
        report = repo.log.drop_before(cut)
        assert report.first_seq == spans[2][0] == repo.log.first_seq
        assert report.segments == tuple(f"{first:020d}.seg" for first, _ in spans[:2])
        assert report.events == spans[1][1], "the events of the dropped segments are counted"
        assert report.bytes > 0
        gone = files_before - {p.name for p in (filled / "journal").iterdir()}
        assert gone == {n for s in report.segments for n in (s, s.replace(".seg", ".idx"))}
        assert _keys(repo) == _expected(spans[2][0]), "reading from 1 starts at first_seq"
        assert _keys(repo, cut) == _expected(cut)
        assert repo.log.stats().first_seq == spans[2][0]
        assert repo.log.segment_files()[0][0] == f"journal/{spans[2][0]:020d}.seg"
        _fill(repo, TOTAL, 5)
        assert repo.log.next_seq == TOTAL + 6, "appending continues the sequence"
    with _open(filled, secret) as repo:
        assert repo.log.first_seq == spans[2][0], "first_seq survives reopening"
        assert verify_journal(repo.log).ok, verify_journal(repo.log).problems


def test_dry_run_changes_nothing(filled: Path, secret: MasterSecret | None) -> None:
    before = sorted(p.name for p in filled.rglob("*"))
    with _open(filled, secret, writable=True) as repo:
        spans = _sealed(repo)
        planned = repo.log.drop_before(spans[1][1] + 1, dry_run=True)
        assert planned.segments and planned.first_seq == spans[2][0]
        assert repo.log.first_seq == 1 and _keys(repo) == _expected(1)
        assert repo.log.drop_before(spans[1][1] + 1) == planned, "the dry run said what happens"
    assert before != sorted(p.name for p in filled.rglob("*"))


@pytest.mark.parametrize("cut", [0, 1, 2], ids=["zero", "one", "inside-first"])
def test_nothing_to_drop(filled: Path, secret: MasterSecret | None, cut: int) -> None:
    with _open(filled, secret, writable=True) as repo:
        report = repo.log.drop_before(cut)
        assert report.segments == () and report.events == 0 and report.first_seq == 1
        assert _keys(repo) == _expected(1)


def test_the_active_segment_is_never_dropped(filled: Path, secret: MasterSecret | None) -> None:
    with _open(filled, secret, writable=True) as repo:
        sealed_last = _sealed(repo)[-1][1]
        report = repo.log.drop_before(10**9)
        assert report.first_seq == sealed_last + 1 == repo.log.first_seq
        assert repo.log.manifest.segments == []
        assert _keys(repo) == _expected(sealed_last + 1), "the active segment's events stay"
        repo.log.seal()
        _fill(repo, TOTAL, 3)
        repo.log.drop_before(10**9)  # drops the segment sealed just now
        assert repo.log.first_seq == TOTAL + 1 and _keys(repo) == [
            conversation(i).key for i in range(TOTAL, TOTAL + 3)
        ]
    with _open(filled, secret, writable=True) as repo:
        assert repo.log.next_seq == TOTAL + 4, "a writer reopens after the journal's start moved"
        assert verify_journal(repo.log).ok


def test_dropping_an_empty_journal(repo_path: Path, secret: MasterSecret | None) -> None:
    with _open(repo_path, secret, writable=True) as repo:
        assert repo.log.drop_before(100) == pruning.DropReport((), 0, 0, 1)
        assert repo.log.first_seq == 1 and repo.log.next_seq == 1


def test_drop_needs_the_writer(filled: Path, secret: MasterSecret | None) -> None:
    with _open(filled, secret) as repo, pytest.raises(RepositoryError, match="writable"):
        repo.log.drop_before(50, dry_run=True)


def test_read_time_and_follow_after_a_drop(filled: Path, secret: MasterSecret | None) -> None:
    with _open(filled, secret, writable=True) as repo:
        first = repo.log.drop_before(_sealed(repo)[1][1] + 1).first_seq
        got = [e.seq for e in repo.log.read_time(0)]
        assert got == list(range(first, TOTAL + 1)), "read_time skips nothing that is left"

        async def follow() -> list[int]:
            seen = []
            async for event in repo.log.follow(1, poll_s=0.01):
                seen.append(event.seq)
                if event.seq == TOTAL:
                    return seen
            return seen

        assert asyncio.run(follow()) == list(range(first, TOTAL + 1))


def test_a_reader_sees_the_drop(filled: Path, secret: MasterSecret | None) -> None:
    reader = _open(filled, secret)
    assert reader.log.first_seq == 1
    assert [e.seq for e in reader.log.read(1, 3)] == [1, 2, 3]
    with _open(filled, secret, writable=True) as repo:
        first = repo.log.drop_before(_sealed(repo)[2][1] + 1).first_seq
    assert [e.seq for e in reader.log.read(1)] == list(range(first, TOTAL + 1)), (
        "a reader whose view is older than the drop starts at the new first_seq"
    )
    assert reader.log.first_seq == first
    assert verify_journal(reader.log).ok


def test_a_drop_during_a_read_ends_it_clearly(filled: Path, secret: MasterSecret | None) -> None:
    reader = _open(filled, secret)
    with _open(filled, secret, writable=True) as repo:
        spans = _sealed(repo)
        events = reader.log.read(1)
        assert next(events).seq == 1
        repo.log.drop_before(spans[2][1] + 1)
        with pytest.raises(RepositoryError, match="dropped while this read"):
            list(events)


def test_verify_reports_a_missing_middle_segment(filled: Path, secret: MasterSecret | None) -> None:
    with _open(filled, secret, writable=True) as repo:
        repo.log.drop_before(_sealed(repo)[0][1] + 1)
        middle = f"journal/{_sealed(repo)[1][0]:020d}.seg"
    (filled / middle).unlink()
    with _open(filled, secret) as repo:
        report = verify_journal(repo.log)
    assert report.problems == [Problem(middle, None, "segment file is missing")], report.problems


# --- the manifest ----------------------------------------------------------------------------


def test_first_seq_is_written_only_once_it_moved(filled: Path, secret: MasterSecret | None) -> None:
    path = filled / MANIFEST_KEY
    assert "first_seq" not in json.loads(path.read_text()), "unchanged for older versions"
    with _open(filled, secret, writable=True) as repo:
        first = repo.log.drop_before(_sealed(repo)[0][1] + 1).first_seq
    doc = json.loads(path.read_text())
    assert doc["first_seq"] == first == doc["segments"][0]["first_seq"]
    assert (doc["mac"] is not None) == (secret is not None)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(first_seq=d["first_seq"] - 1),
        lambda d: d.pop("first_seq"),
    ],
    ids=["changed", "removed"],
)
def test_first_seq_is_covered_by_the_mac(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None]
) -> None:
    store, key = LocalStore(tmp_path), b"k" * 32
    infos = _manifest_infos()
    Manifest(infos[1:], infos[1].first_seq).save(store, key)
    assert Manifest.load(store, key).first_seq == infos[1].first_seq
    doc = json.loads(store.get(MANIFEST_KEY))
    edit(doc)
    store.put(MANIFEST_KEY, json.dumps(doc).encode())
    with pytest.raises(CorruptionError, match="MAC"):
        Manifest.load(store, key)


def test_a_manifest_without_first_seq_still_verifies(tmp_path: Path) -> None:
    store, key = LocalStore(tmp_path), b"k" * 32
    Manifest(_manifest_infos()).save(store, key)
    doc = json.loads(store.get(MANIFEST_KEY))
    assert "first_seq" not in doc, "a journal that starts at 1 writes the old format"
    loaded = Manifest.load(store, key)
    assert loaded.first_seq == 1 and len(loaded.segments) == 2


def test_a_first_seq_after_the_first_segment_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    infos = _manifest_infos()
    Manifest(infos, infos[1].first_seq).save(store, None)
    with pytest.raises(CorruptionError, match="first_seq"):
        Manifest.load(store, None)


def _manifest_infos() -> list[SegmentInfo]:
    return [SegmentInfo(f"{f:020d}.seg", f, f + 9, 100, "00" * 32, 1, 2, 3) for f in (1, 11)]


# --- crashes ------------------------------------------------------------------------------


class Crash(Exception):
    """Stands for the process dying at this point."""


def _crash_after(calls: int, real: Callable[..., Any]) -> Callable[..., Any]:
    left = [calls]

    def fake(*args: Any, **kw: Any) -> Any:
        if left[0] == 0:
            raise Crash
        left[0] -= 1
        return real(*args, **kw)

    return fake


STEPS = [
    ("manifest", "save", 0),
    ("shred", "shred_key", 0),
    ("shred", "shred_key", 1),
    ("unlink", "remove", 0),
    ("unlink", "remove", 1),
    ("unlink", "remove", 3),
    ("fsync", "fsync_dir", 0),
]


@pytest.mark.parametrize(("step", "name", "calls"), STEPS, ids=[f"{s[0]}-{s[2]}" for s in STEPS])
def test_a_crash_at_any_step_of_a_drop_leaves_a_readable_journal(
    filled: Path,
    secret: MasterSecret | None,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
    name: str,
    calls: int,
) -> None:
    repo = _open(filled, secret, writable=True)
    spans = _sealed(repo)
    cut = spans[1][1] + 1
    if step == "manifest":
        monkeypatch.setattr(Manifest, "save", _crash_after(calls, Manifest.save))
    else:
        monkeypatch.setattr(pruning, name, _crash_after(calls, getattr(pruning, name)))
    with pytest.raises(Crash):
        repo.log.drop_before(cut)
    monkeypatch.undo()
    repo.log.close()  # the lock dies with the process
    first = 1 if step == "manifest" else spans[2][0]
    with _open(filled, secret) as reader:
        assert reader.log.first_seq == first
        assert _keys(reader) == _expected(first), "a reader sees a whole journal"
        assert verify_journal(reader.log).ok, verify_journal(reader.log).problems
    with _open(filled, secret, writable=True) as writer:
        leftovers = [n for n in writer.log.notes if "dropped segments" in n]
        assert bool(leftovers) == (step in ("shred", "unlink")), writer.log.notes
        assert writer.log.drop_before(cut).first_seq == spans[2][0], "the drop can be redone"
    names = {p.name for p in (filled / "journal").iterdir()}
    keys = {p.name for p in (filled / "keys" / "segments").glob("*")} if secret else set()
    for first_seq, _ in spans[:2]:
        assert f"{first_seq:020d}.seg" not in names and f"{first_seq:020d}.idx" not in names
        assert f"{first_seq:020d}.key" not in keys, "the dropped segments' keys are destroyed"
