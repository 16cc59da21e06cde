"""``state_at``: the nearest snapshot plus the events after it gives the state at any cut."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compaction.snapshots import snapshots_of
from compaction.state_at import StateAt, state_at
from compaction.tables import FILESYSTEM, file_image
from journal.events import ChangeEvent
from tests.compaction.test_snapshots import State, _repo, oracle, workloads


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
