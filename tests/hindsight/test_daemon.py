"""The daemon end to end: real files, a real watcher, a real repository."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from capture.paths import FileRoot
from hindsight.backup_service import BackupService
from hindsight.config import default_config
from hindsight.daemon import Daemon
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.repository import Repository

INCLUDE = (".env", "config.py", "*.json", "src/**")
EXCLUDE = ("**/node_modules/**",)
SECRET = MasterSecret(key=b"k" * 32, origin="test key")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "src" / "lib").mkdir(parents=True)
    (root / "config.py").write_text("DEBUG = False\n")
    (root / "src" / "app.ts").write_text("export const x = 1;\n")
    (root / "src" / "lib" / "util.ts").write_text("export {}\n")
    return root


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    Repository.init(tmp_path / "repo", SECRET, encrypt_all=False)
    return tmp_path / "repo"


@asynccontextmanager
async def running(repo_path: Path, tree: Path) -> AsyncIterator[tuple[Daemon, Repository]]:
    """A daemon protecting ``tree``, ready (start-up scan done); stopped cleanly on exit."""
    root = FileRoot.of("app", tree, INCLUDE, EXCLUDE, secrets=[".env"])
    with Repository.open(repo_path, SECRET, writable=True) as repo:
        daemon = Daemon(repo, [root], settle_s=0.05, max_wait_s=0.2)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        await asyncio.wait_for(daemon.ready.wait(), 20)
        try:
            yield daemon, repo
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)


def _append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def file_events(repo: Repository) -> list[ChangeEvent]:
    return [e for e in repo.log.read() if e.source is Source.FILESYSTEM]


async def until(repo: Repository, done: Callable[[dict[str, ChangeEvent]], bool]) -> None:
    """Wait (at most 10 s) until the newest event per path satisfies ``done``."""
    for _ in range(200):
        latest = {e.key: e for e in file_events(repo)}
        if done(latest):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not captured: {sorted((k, e.op.value) for k, e in latest.items())}")


def op_is(key: str, op: Op, tree: Path | None = None) -> Callable[[dict[str, ChangeEvent]], bool]:
    """The newest event of ``key`` is ``op`` (and, given ``tree``, matches the file's size)."""

    def done(latest: dict[str, ChangeEvent]) -> bool:
        if key not in latest or latest[key].op is not op:
            return False
        image = latest[key].after
        return (
            tree is None
            or not isinstance(image, FileImage)
            or ((tree / key).exists() and image.size == (tree / key).stat().st_size)
        )

    return done


async def test_every_kind_of_change_is_captured_live(repo_path: Path, tree: Path) -> None:
    async with running(repo_path, tree) as (_, repo):
        await until(repo, op_is("src/app.ts", Op.CREATE))
        steps: list[tuple[Callable[[], object], str, Op]] = [
            (lambda: (tree / "src/new.ts").write_text("new"), "src/new.ts", Op.CREATE),
            (lambda: (tree / "config.py").write_text("DEBUG = True\n"), "config.py", Op.MODIFY),
            (lambda: _append(tree / "src/new.ts", "more"), "src/new.ts", Op.MODIFY),
            (lambda: os.truncate(tree / "src/new.ts", 1), "src/new.ts", Op.MODIFY),
            (lambda: (tree / "config.py").chmod(0o600), "config.py", Op.MODIFY),
            (
                lambda: (tree / "src/new.ts").rename(tree / "src/renamed.ts"),
                "src/renamed.ts",
                Op.MOVE,
            ),
            (lambda: (tree / "src/renamed.ts").unlink(), "src/renamed.ts", Op.DELETE),
            (lambda: shutil.rmtree(tree / "src/lib"), "src/lib/util.ts", Op.DELETE),
            (lambda: (tree / ".env").write_text("TOKEN=abc\n"), ".env", Op.CREATE),
        ]
        for change, key, op in steps:
            change()
            await until(repo, op_is(key, op, tree))
        latest = {e.key: e for e in file_events(repo)}
        image = latest["config.py"].after
        assert isinstance(image, FileImage) and image.mode == 0o600
        assert repo.blobs.read(image.blob) == b"DEBUG = True\n", "content is byte-identical"
        env = latest[".env"].after
        assert isinstance(env, FileImage) and env.sha256 == "", "secret hash withheld"


async def test_changes_while_stopped_are_captured_at_start(repo_path: Path, tree: Path) -> None:
    async with running(repo_path, tree):
        pass
    (tree / "config.py").write_text("changed while down\n")
    (tree / "src/app.ts").unlink()
    (tree / "src/offline.ts").write_text("created while down")
    async with running(repo_path, tree) as (_, repo):
        latest = {e.key: e for e in file_events(repo)}
    assert latest["config.py"].op is Op.MODIFY
    assert latest["src/app.ts"].op is Op.DELETE
    assert latest["src/offline.ts"].op is Op.CREATE


async def test_rescan_recovers_changes_the_watcher_dropped(repo_path: Path, tree: Path) -> None:
    async with running(repo_path, tree) as (daemon, repo):
        assert daemon.watcher is not None
        daemon.watcher.pause_delivery()
        (tree / "config.py").write_text("unseen edit\n")
        (tree / "src/dropped.ts").write_text("unseen create")
        (tree / "src/app.ts").unlink()
        await asyncio.sleep(0.3)
        assert "src/dropped.ts" not in {e.key for e in file_events(repo)}, "delivery was paused"
        daemon.watcher.resume_delivery(drop=True)
        await until(
            repo,
            lambda latest: (
                op_is("src/dropped.ts", Op.CREATE)(latest)
                and op_is("src/app.ts", Op.DELETE)(latest)
                and op_is("config.py", Op.MODIFY)(latest)
            ),
        )


def test_sigterm_stops_cleanly_with_nothing_lost(tmp_path: Path, tree: Path) -> None:
    exe = Path(sys.executable).with_name("hindsight")

    def journal_has(key: str, op: str) -> bool:
        """Poll the journal from another process (at most 20 s) for an event."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            tail = [exe, "journal", "tail", "--json", "-n", "100"]
            out = subprocess.run(tail, cwd=tmp_path, capture_output=True, text=True).stdout
            if any(
                f'"key": "{key}"' in line and f'"op": "{op}"' in line for line in out.splitlines()
            ):
                return True
            time.sleep(0.1)
        return False

    init = [exe, "init", "--protect", str(tree)]
    subprocess.run(init, cwd=tmp_path, check=True, capture_output=True)
    daemon = subprocess.Popen([exe, "run"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        assert journal_has("config.py", "CREATE"), "the start-up scan captured the tree"
        (tree / "config.py").write_text("written while running\n")
        assert journal_has("config.py", "MODIFY"), "the running daemon captured the change"
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    assert "Traceback" not in err, err
    verify = subprocess.run(
        [exe, "journal", "verify"], cwd=tmp_path, capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_scheduled_jobs_run_in_the_daemon(repo_path: Path, tree: Path) -> None:
    async with running(repo_path, tree) as (daemon, repo):
        full = await asyncio.to_thread(daemon._run_job, "full")
        assert full.startswith("backup_") and "(full) verified" in full, full
        (tree / "config.py").write_text("DEBUG = True\n")
        await asyncio.sleep(0.5)
        incremental = await asyncio.to_thread(daemon._run_job, "incremental")
        assert "(incremental) verified" in incremental, incremental
        verified = await asyncio.to_thread(daemon._run_job, "verify")
        assert verified.count(" ok") == 2, verified
        pruned = await asyncio.to_thread(daemon._run_job, "prune")
        assert pruned.startswith("removed 0 backups"), pruned
    with Repository.open(repo_path, SECRET) as repo:
        backups = BackupService(default_config(repo_path), repo).find()
    assert [b.type for b in backups] == ["full", "incremental"]
