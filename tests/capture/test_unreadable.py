"""Files and directories capture cannot read are reported, and the rest is captured."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can use (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="hindsight-unreadable-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def as_unprivileged(cmd: list[str]) -> list[str]:
    """Run as ``nobody`` when we are root, so file permissions apply to the child."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]


def test_permission_denied_is_reported_not_fatal(shared_dir: Path) -> None:
    tree = shared_dir / "tree"
    (tree / "locked").mkdir(parents=True)
    (tree / "config.py").write_text("ok\n")
    (tree / "secret.json").write_text("{}")
    (tree / "locked" / "inner.json").write_text("{}")
    for path in (tree, tree / "config.py", tree / "locked", tree / "locked" / "inner.json"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (tree / "secret.json").chmod(0o000)
    (tree / "locked").chmod(0o000)
    child = [
        sys.executable,
        str(ROOT / "tests/capture/scan_child.py"),
        str(tree),
        str(shared_dir / "repo"),
    ]
    done = subprocess.run(
        as_unprivileged(child),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["keys"] == ["config.py"], f"readable files are captured: {report}"
    problems = {p[1]: p[2] for p in report["problems"]}
    assert "secret.json" in problems and "Permission denied" in problems["secret.json"], problems
    assert "locked" in problems and "cannot list" in problems["locked"], problems
    assert "{}" not in json.dumps(problems), "no file content in problem reports"
