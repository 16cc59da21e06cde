"""A 1 GiB file: bounded memory, and an edit in its middle stores only the changed chunks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_one_gib_file_in_bounded_memory_and_small_edit_stores_little(tmp_path: Path) -> None:
    child = [sys.executable, str(ROOT / "tests/capture/large_file_child.py"), str(tmp_path), "1024"]
    done = subprocess.run(
        child, capture_output=True, text=True, timeout=600, cwd=ROOT, env={"PYTHONPATH": str(ROOT)}
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["rss_mib"] < 200, f"peak RSS {report['rss_mib']:.0f} MiB (limit 200): {report}"
    assert report["first"] >= 1024 * 1024 * 1024, f"the whole file was stored: {report}"
    assert report["changed"] == 1, f"the edit was captured: {report}"
    assert report["second"] < 2 * 1024 * 1024, f"an edit stores < 2 MiB: {report}"
