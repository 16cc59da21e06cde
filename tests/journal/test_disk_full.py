"""A full disk refuses appends cleanly: nothing acknowledged is lost, nothing half-written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from journal.repository import Repository
from journal.verify import verify_journal
from tests.journal.crash_writer import event_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("limit", [20_000, 37_000], ids=["20k", "37k"])
def test_writes_failing_mid_append_lose_nothing_acknowledged(tmp_path: Path, limit: int) -> None:
    repo_path = tmp_path / "repo"
    Repository.init(repo_path, None)
    child = [sys.executable, str(ROOT / "tests/journal/diskfull_writer.py"), str(repo_path)]
    done = subprocess.run(
        [*child, str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    acked = [int(line.split()[1]) for line in lines if line.startswith("ack ")]
    failures = [line for line in lines if line.startswith("fail ")]
    assert failures, f"the size limit was never hit: {lines[-3:]}"
    assert all("cannot append" in f for f in failures), f"clear errors only: {failures}"
    after_failures = lines[max(i for i, line in enumerate(lines) if line.startswith("fail ")) :]
    assert sum(line.startswith("ack ") for line in after_failures) == 2, "appends resume"
    notes = [line for line in lines if line.startswith("note ")]
    assert any("sealing" in n for n in notes), f"the manifest limit must fail a seal: {notes}"
    last = acked[-1] if acked else 0
    with Repository.open(repo_path, None, writable=True) as repo:
        report = verify_journal(repo.log)
        assert report.ok, f"a refused append must leave no damage: {report.problems}"
        events = list(repo.log.read())
        assert [e.seq for e in events] == list(range(1, len(events) + 1)), "gapless"
        assert len(events) == last, f"acknowledged {last}; refused appends must leave nothing"
        assert all(e.key == event_for(e.seq).key for e in events), "content matches"
        assert repo.log.append([event_for(len(events) + 1)]).first == len(events) + 1
