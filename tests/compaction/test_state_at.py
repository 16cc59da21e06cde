"""``state_at``: the nearest snapshot plus the events after it gives the state at any cut."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compaction.builder
from compaction.snapshots import snapshots_of
from compaction.state_at import StateAt, state_at
from compaction.tables import FILESYSTEM, file_image
from journal.events import ChangeEvent, Op
from tests.compaction.test_snapshots import State, _doc, _put, _repo, oracle, workloads


def state_of(at: StateAt) -> State:
    """What ``at`` holds, in the oracle's shape."""
    state: State = {}
    for table in at.tables:
        ref = table.ref
        for batch in at.rows(table):
            for row in batch.to_pylist():
                value = file_image(row) if ref.source == FILESYSTEM else row["body"]
                state.setdefault((ref.source, ref.deployment, ref.namespace), {})[row["key"]] = (
                    value
                )
    return state


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=workloads,
    snapshot_cuts=st.lists(st.integers(1, 60), max_size=3),
    cuts=st.lists(st.integers(0, 60), min_size=1, max_size=6),
    encrypted=st.booleans(),
)
def test_state_at_any_cut_equals_replaying_up_to_it(
    events: list[ChangeEvent], snapshot_cuts: list[int], cuts: list[int], encrypted: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp, _repo(Path(tmp), encrypted) as repo:
        repo.log.append(events)
        stored = list(repo.log.read())
        snaps = snapshots_of(repo)
        for cut in sorted({min(c, len(stored)) for c in snapshot_cuts}):
            snaps.take(repo.log, upto=cut)
        for cut in (min(c, len(stored)) for c in cuts):
            at = state_at(snaps, repo.log, cut)
            assert at.cut_seq == cut
            assert state_of(at) == oracle(stored[:cut]), f"state at seq {cut}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=workloads, snapshot_cut=st.integers(1, 60), cut=st.integers(0, 60))
def test_rows_come_in_key_order_each_key_once(
    events: list[ChangeEvent], snapshot_cut: int, cut: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp, _repo(Path(tmp), False) as repo:
        repo.log.append(events)
        stored = list(repo.log.read())
        snaps = snapshots_of(repo)
        snaps.take(repo.log, upto=min(snapshot_cut, len(stored)))
        at = state_at(snaps, repo.log, min(cut, len(stored)))
        for table in at.tables:
            keys = [k for batch in at.rows(table) for k in batch.column("key").to_pylist()]
            assert keys == sorted(set(keys)), f"{table.ref.id}: keys out of order or repeated"
            deleted = [d for batch in at.rows(table) for d in batch.column("deleted").to_pylist()]
            assert not any(deleted), f"{table.ref.id}: a tombstone among the live rows"


def test_changes_laid_over_a_part_of_many_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes before, between, inside and after the part's batches, deletes among them."""
    monkeypatch.setattr(compaction.builder, "WRITE_ROWS", 100)  # a row group per 100 rows
    with _repo(tmp_path, False) as repo:
        repo.log.append([_put(i) for i in range(10, 3000, 2)])  # even keys in the snapshot
        snaps = snapshots_of(repo)
        snaps.take(repo.log)
        later = [_put(i) for i in range(1, 3100, 3)]  # odd and even keys, before and after
        dels = [e._replace(op=Op.DELETE, after=None) for e in [_put(i) for i in range(0, 3000, 7)]]
        repo.log.append([*later, *dels])
        at = state_at(snaps, repo.log, repo.log.next_seq - 1)
        (table,) = at.tables
        batches = list(at.rows(table))
        got = [(r["key"], r["body"]) for b in batches for r in b.to_pylist()]
    expected: dict[str, bytes] = {}
    for e in [*[_put(i) for i in range(10, 3000, 2)], *later]:
        expected[e.key] = _doc(int(e.key[1:]))
    for e in dels:
        expected.pop(e.key, None)
    assert got == sorted(expected.items()), "merged rows differ from the fold"
    assert len(batches) > 10, f"the part should be read in many batches, got {len(batches)}"
