"""PathWatcher against real files: every kind of change becomes a hint, bursts coalesce, losses
become rescans. Timeouts are generous and assertions are about content, so a loaded machine
only makes the tests slower, not flaky; exact counts are asserted only where they are the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from capture.watcher import Hint, PathWatcher
from journal.errors import ConfigError, SourceUnavailable

SETTLE = 0.1
MAX_WAIT = 0.5
WAIT = 5.0  # how long a test waits for a hint it expects
EXCLUDED_DIRS = {"node_modules", ".git"}

Hints = list[tuple[float, Hint]]  # (delivery time, hint)

# Watchdog warns from its inotify thread when `mkdir -p` races its own recursive watching; the
# warning is harmless, and as an error (our pytest config) it would be reported as a rescan.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def wanted(root: str, relpath: str, is_dir: bool) -> bool:
    """Everything except node_modules and .git trees, and *.tmp files."""
    name = relpath.rpartition("/")[2]
    return name not in EXCLUDED_DIRS if is_dir else not name.endswith(".tmp")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    return path


@pytest.fixture
async def watcher(root: Path) -> AsyncIterator[PathWatcher]:
    async with PathWatcher([("r", root)], wanted, settle_s=SETTLE, max_wait_s=MAX_WAIT) as w:
        yield w


async def hints_until(
    watcher: PathWatcher, done: Callable[[list[Hint]], bool], timeout: float = WAIT
) -> list[Hint]:
    """Hints in delivery order until ``done`` holds; fails after ``timeout``."""
    return [h for _, h in await timed_hints_until(watcher, done, timeout)]


async def timed_hints_until(
    watcher: PathWatcher, done: Callable[[list[Hint]], bool], timeout: float = WAIT
) -> Hints:
    seen: Hints = []

    async def collect() -> None:
        while not done([h for _, h in seen]):
            hint = await watcher.get()
            seen.append((time.monotonic(), hint))

    try:
        await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        pytest.fail(f"condition not met within {timeout}s; hints so far: {seen}")
    return seen


async def hints_for(watcher: PathWatcher, seconds: float) -> Hints:
    """Every hint delivered during the next ``seconds``."""
    seen: Hints = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            hint = await asyncio.wait_for(watcher.get(), left)
        except TimeoutError:
            break
        seen.append((time.monotonic(), hint))
    return seen


def has(kind: str, relpath: str, old: str | None = None) -> Callable[[list[Hint]], bool]:
    def check(hints: list[Hint]) -> bool:
        return any(
            h.kind == kind and h.relpath == relpath and (old is None or h.old_relpath == old)
            for h in hints
        )

    return check


def every(*checks: Callable[[list[Hint]], bool]) -> Callable[[list[Hint]], bool]:
    return lambda hints: all(check(hints) for check in checks)


def paths(hints: list[Hint]) -> set[str]:
    return {h.relpath for h in hints}


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


# ---------------------------------------------------------------------------- single changes
async def test_create_gives_changed_hint(watcher: PathWatcher, root: Path) -> None:
    (root / "a.txt").write_text("hello")
    hints = await hints_until(watcher, has("changed", "a.txt"))
    assert all(h.root == "r" for h in hints), hints


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda p: p.write_text("rewritten"), id="modify"),
        pytest.param(lambda p: append(p, "more"), id="append"),
        pytest.param(lambda p: os.truncate(p, 1), id="truncate"),
        pytest.param(lambda p: p.chmod(0o600), id="chmod"),
        pytest.param(lambda p: os.utime(p, (1, 1)), id="touch-times"),
    ],
)
async def test_change_to_existing_file_gives_changed_hint(
    root: Path, change: Callable[[Path], object]
) -> None:
    path = root / "f.txt"
    path.write_text("original content")
    path.chmod(0o644)
    async with PathWatcher([("r", root)], wanted, settle_s=SETTLE) as watcher:
        change(path)
        await hints_until(watcher, has("changed", "f.txt"))


async def test_delete_gives_deleted_hint(root: Path) -> None:
    (root / "gone.txt").write_text("x")
    async with PathWatcher([("r", root)], wanted) as watcher:
        (root / "gone.txt").unlink()
        await hints_until(watcher, has("deleted", "gone.txt"))


async def test_rename_within_root_gives_moved_hint_with_old_path(root: Path) -> None:
    (root / "sub").mkdir()
    (root / "old.txt").write_text("x")
    async with PathWatcher([("r", root)], wanted) as watcher:
        (root / "old.txt").rename(root / "sub" / "new.txt")
        await hints_until(watcher, has("moved", "sub/new.txt", old="old.txt"))


async def test_move_out_of_root_is_a_deletion(root: Path, outside: Path) -> None:
    (root / "leaving.txt").write_text("x")
    async with PathWatcher([("r", root)], wanted) as watcher:
        (root / "leaving.txt").rename(outside / "leaving.txt")
        hints = await hints_until(watcher, has("deleted", "leaving.txt"))
    assert not any(h.kind == "moved" for h in hints), hints


async def test_move_into_root_is_a_creation(
    watcher: PathWatcher, root: Path, outside: Path
) -> None:
    (outside / "arriving.txt").write_text("x")
    (outside / "arriving.txt").rename(root / "arriving.txt")
    await hints_until(watcher, has("changed", "arriving.txt"))


async def test_move_between_roots_deletes_in_one_and_creates_in_other(
    root: Path, outside: Path
) -> None:
    (root / "f.txt").write_text("x")
    async with PathWatcher([("a", root), ("b", outside)], wanted) as watcher:
        (root / "f.txt").rename(outside / "f.txt")
        hints = await hints_until(
            watcher,
            lambda hs: (
                {(h.root, h.kind, h.relpath) for h in hs}
                >= {("a", "deleted", "f.txt"), ("b", "changed", "f.txt")}
            ),
        )
    assert not any(h.kind == "moved" for h in hints), hints


# ---------------------------------------------------------------------------- directories
async def test_new_directory_tree_hints_directory_and_files(
    watcher: PathWatcher, root: Path
) -> None:
    (root / "d" / "e").mkdir(parents=True)
    (root / "d" / "x.txt").write_text("x")
    (root / "d" / "e" / "y.txt").write_text("y")
    await hints_until(watcher, lambda hs: {"d", "d/x.txt", "d/e/y.txt"} <= paths(hs), timeout=WAIT)


async def test_directory_delete_names_the_directory(root: Path) -> None:
    (root / "d" / "e").mkdir(parents=True)
    for name in ("a", "b", "e/c"):
        (root / "d" / name).write_text(name)
    async with PathWatcher([("r", root)], wanted) as watcher:
        shutil.rmtree(root / "d")
        await hints_until(watcher, has("deleted", "d"))


async def test_directory_rename_is_one_move_of_the_directory(root: Path) -> None:
    (root / "d").mkdir()
    for i in range(20):
        (root / "d" / f"{i}.txt").write_text("x")
    async with PathWatcher([("r", root)], wanted) as watcher:
        (root / "d").rename(root / "renamed")
        hints = await hints_until(watcher, has("moved", "renamed", old="d"))
        hints += [h for _, h in await hints_for(watcher, SETTLE + 0.3)]
    moves = [h for h in hints if h.kind == "moved"]
    assert moves == [h for h in moves if h.relpath == "renamed"], (
        "entries get no moves of their own"
    )


async def test_symlink_is_reported_not_followed(root: Path, outside: Path) -> None:
    async with PathWatcher([("r", root)], wanted) as watcher:
        (root / "link").symlink_to(outside, target_is_directory=True)
        (root / "dangling").symlink_to(root / "nowhere")
        await hints_until(watcher, every(has("changed", "link"), has("changed", "dangling")))
        (outside / "behind-the-link.txt").write_text("x")
        (root / "barrier.txt").write_text("x")
        hints = await hints_until(watcher, has("changed", "barrier.txt"))
        hints += [h for _, h in await hints_for(watcher, 2 * SETTLE)]
    assert not any("behind-the-link" in h.relpath for h in hints), hints


async def test_excluded_trees_and_files_give_no_hints(watcher: PathWatcher, root: Path) -> None:
    for tree in ("node_modules/pkg", "src/node_modules/dep", ".git/objects"):
        (root / tree).mkdir(parents=True)
        (root / tree / "file.js").write_text("x")
    (root / "src" / "scratch.tmp").write_text("x")
    (root / "src" / "kept.txt").write_text("x")
    hints = await hints_until(watcher, has("changed", "src/kept.txt"))
    hints += [h for _, h in await hints_for(watcher, 2 * SETTLE + 0.2)]
    leaked = [h for h in hints if "node_modules" in h.relpath or ".git" in h.relpath]
    assert not leaked, f"excluded paths were hinted: {leaked}"
    assert "src/scratch.tmp" not in paths(hints)


# ---------------------------------------------------------------------------- timing
async def test_many_quick_writes_coalesce_into_one_hint(root: Path) -> None:
    settle, max_wait = 0.25, 1.0  # a wide window, so a descheduled writer still fits inside
    path = root / "busy.txt"
    path.write_text("")
    async with PathWatcher([("r", root)], wanted, settle_s=settle, max_wait_s=max_wait) as w:
        for i in range(20):
            append(path, f"line {i}\n")
        timed = await timed_hints_until(w, has("changed", "busy.txt"))
        timed += await hints_for(w, settle + 0.3)  # any split-off hint would have come by now
    hints = [h for _, h in timed if h.relpath == "busy.txt"]
    assert len(hints) == 1, f"expected one coalesced hint, got {hints}"
    delivered, hint = next((t, h) for t, h in timed if h.relpath == "busy.txt")
    waited = delivered - hint.first_seen
    assert settle - 0.01 <= waited <= max_wait + 0.3, f"delivered after {waited:.3f}s"


async def test_burst_gives_few_hints_but_one_at_least_every_max_wait(
    watcher: PathWatcher, root: Path
) -> None:
    path = root / "hot.log"
    path.write_text("")
    await hints_until(watcher, has("changed", "hot.log"))
    duration = 1.5
    span: list[float] = []  # when the first and the last write happened

    def burst() -> None:
        span.append(time.monotonic())
        for i in range(200):
            append(path, f"{i}\n")
            time.sleep(duration / 200)
        span.append(time.monotonic())

    writer = asyncio.create_task(asyncio.to_thread(burst))
    timed = await hints_for(watcher, duration + MAX_WAIT + 0.3)
    await writer
    times = [span[0]] + [t for t, h in timed if h.relpath == "hot.log" and t > span[0]]
    gaps = [b - a for a, b in itertools.pairwise(times) if a < span[1]]
    assert 2 <= len(times) - 1 <= 12, f"{len(times) - 1} hints for 200 writes"
    assert max(gaps) <= MAX_WAIT + 0.4, f"a change waited {max(gaps):.2f}s during the burst"


async def test_single_write_is_delivered_quickly(watcher: PathWatcher, root: Path) -> None:
    latencies = []
    for i in range(5):
        written = time.monotonic()
        (root / f"quick{i}.txt").write_text("x")
        timed = await timed_hints_until(watcher, has("changed", f"quick{i}.txt"))
        latencies.append(timed[-1][0] - written)
    median = sorted(latencies)[len(latencies) // 2]
    assert median <= SETTLE + 0.2, f"latencies {[f'{x:.3f}' for x in latencies]}"


# ---------------------------------------------------------------------------- losses
async def test_paused_delivery_drops_events_and_asks_for_rescan(
    watcher: PathWatcher, root: Path
) -> None:
    watcher.pause_delivery()
    for i in range(10):
        (root / f"lost{i}.txt").write_text("x")
    (root / "lost0.txt").unlink()
    await asyncio.sleep(0.3)
    watcher.resume_delivery(drop=True)
    hints = await hints_until(watcher, has("rescan", ""))
    hints += [h for _, h in await hints_for(watcher, 2 * SETTLE)]
    assert Hint("r", "", "rescan", None, hints[0].first_seen) in hints, hints
    assert not any(h.relpath.startswith("lost") for h in hints), "held events were dropped"
    assert watcher.dropped > 0
    assert watcher.rescans == 1


async def test_paused_delivery_without_drop_replays(watcher: PathWatcher, root: Path) -> None:
    watcher.pause_delivery()
    (root / "held.txt").write_text("x")
    await asyncio.sleep(0.3)
    watcher.resume_delivery(drop=False)
    hints = await hints_until(watcher, has("changed", "held.txt"))
    assert not any(h.kind == "rescan" for h in hints), hints


async def test_too_many_pending_paths_collapse_into_one_rescan(root: Path) -> None:
    async with PathWatcher([("r", root)], wanted, max_pending=20) as watcher:
        for i in range(100):
            (root / f"many{i}.txt").write_text("x")
        # Read nothing meanwhile, as a stalled consumer would.
        deadline = time.monotonic() + WAIT
        while watcher.rescans == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)  # let the last raw events arrive
        hints = watcher.drain()
    assert [h for h in hints if h.kind == "rescan"] == [hints[0]], hints[:3]
    assert len(hints) <= 21, f"{len(hints)} hints kept despite the bound"
    assert watcher.dropped >= 20


@pytest.mark.slow
async def test_kernel_queue_overflow_gives_rescan_or_loses_nothing(root: Path) -> None:
    """A writer process outruns the reader and usually overflows the kernel queue (16384
    events by default). Either way no change may go unnoticed: a rescan, or every file."""
    count = 40_000
    code = (
        "import os, sys\n"
        f"for i in range({count}):\n"
        "    os.close(os.open(os.path.join(sys.argv[1], f'f{i}'), os.O_CREAT | os.O_WRONLY))\n"
    )
    seen: set[str] = set()
    rescan = False
    async with PathWatcher([("r", root)], wanted) as watcher:
        writer = await asyncio.create_subprocess_exec(sys.executable, "-c", code, str(root))
        assert await writer.wait() == 0
        deadline = time.monotonic() + 60
        while not rescan and len(seen) < count and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                hint = await asyncio.wait_for(watcher.get(), 1.0)
                rescan = hint.kind == "rescan"
                seen.add(hint.relpath)
    assert rescan or len(seen) == count, f"{len(seen)} of {count} files hinted, no rescan"


async def test_vanished_root_gives_rescan_and_is_watched_again(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="hindsight.capture.watcher")
    (root / "f.txt").write_text("x")
    async with PathWatcher([("r", root)], wanted) as watcher:
        shutil.rmtree(root)
        await hints_until(watcher, has("rescan", ""))
        assert any(r.name == "hindsight.capture.watcher" for r in caplog.records)
        watcher.check_roots()  # still gone: nothing to do, nothing raised
        root.mkdir()
        watcher.check_roots()
        await hints_until(watcher, has("rescan", ""))
        (root / "again.txt").write_text("x")
        await hints_until(watcher, has("changed", "again.txt"))


async def test_failing_predicate_gives_rescan_and_watching_goes_on(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def fussy(root_name: str, relpath: str, is_dir: bool) -> bool:
        if relpath == "boom.txt":
            raise ValueError("predicate failed")
        return True

    async with PathWatcher([("r", root)], fussy) as watcher:
        (root / "boom.txt").write_text("x")
        await hints_until(watcher, has("rescan", ""))
        (root / "fine.txt").write_text("x")
        await hints_until(watcher, has("changed", "fine.txt"))
    assert "ValueError" in caplog.text


async def test_replaced_root_is_watched_again(root: Path, tmp_path: Path) -> None:
    async with PathWatcher([("r", root)], wanted) as watcher:
        root.rename(tmp_path / "old-root")  # inotify keeps watching the moved directory
        root.mkdir()
        watcher.check_roots()
        await hints_until(watcher, has("rescan", ""))
        (tmp_path / "old-root" / "stale.txt").write_text("x")
        (root / "fresh.txt").write_text("x")
        hints = await hints_until(watcher, has("changed", "fresh.txt"))
        hints += [h for _, h in await hints_for(watcher, SETTLE + 0.2)]
    assert "stale.txt" not in paths(hints), hints


# ---------------------------------------------------------------------------- API
async def test_drain_returns_hints_still_settling(root: Path) -> None:
    async with PathWatcher([("r", root)], wanted, settle_s=5, max_wait_s=5) as watcher:
        (root / "a.txt").write_text("x")
        drained: list[Hint] = []
        deadline = time.monotonic() + WAIT
        while not drained and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            drained = watcher.drain()
    assert [h.relpath for h in drained] == ["a.txt"], drained


async def test_get_ready_returns_only_settled_hints(root: Path) -> None:
    async with PathWatcher([("r", root)], wanted, settle_s=0.5, max_wait_s=1.0) as watcher:
        (root / "settled.txt").write_text("x")
        batch: list[Hint] = []
        deadline = time.monotonic() + WAIT
        while "settled.txt" not in paths(batch) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            batch += watcher.get_ready()
        assert "settled.txt" in paths(batch)
        (root / "settling.txt").write_text("x")
        await asyncio.sleep(0.1)
        assert "settling.txt" not in paths(watcher.get_ready()), "a settling hint must wait"
        await hints_until(watcher, has("changed", "settling.txt"))


async def test_exit_delivers_pending_hints_and_ends_iteration(root: Path) -> None:
    got: list[Hint] = []
    watcher = PathWatcher([("r", root)], wanted, settle_s=5, max_wait_s=5)

    async def consume() -> None:
        async for hint in watcher:
            got.append(hint)

    async with watcher:
        reader = asyncio.create_task(consume())
        (root / "late.txt").write_text("x")
        await asyncio.sleep(0.3)
    await asyncio.wait_for(reader, WAIT)
    assert "late.txt" in paths(got)


@pytest.mark.parametrize("kind", ["missing", "file"])
async def test_root_that_cannot_be_watched_raises_source_unavailable(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "not-a-dir"
    if kind == "file":
        path.write_text("x")
    with pytest.raises(SourceUnavailable, match="cannot watch root 'r'"):
        async with PathWatcher([("r", path)], wanted):
            pass


@pytest.mark.parametrize(
    ("roots", "kwargs"),
    [
        pytest.param([("r", Path("/a")), ("r", Path("/b"))], {}, id="duplicate-names"),
        pytest.param([], {}, id="no-roots"),
        pytest.param([("r", Path("/a"))], {"settle_s": 1.0, "max_wait_s": 0.5}, id="settle"),
    ],
)
def test_bad_arguments_raise_config_error(
    roots: list[tuple[str, Path]], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigError):
        PathWatcher(roots, wanted, **kwargs)
