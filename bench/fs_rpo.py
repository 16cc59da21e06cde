"""Change-to-durable latency of the capture daemon (the filesystem RPO) on a generated tree.

Makes a chatbot tree with ``hindsight.demo.make_tree``, creates an encrypted repository
protecting it, and starts ``hindsight run``. A second process follows the journal with
``hindsight journal tail --follow --json``; it prints only committed events, which with the
default durability ("batch") are fsynced. Once a probe file's event comes through (so the
initial scan is over and the watch is live), 1,000 file changes are written at a steady
rate of 20 per second: half edits of existing files, half new files, every path distinct
and every content unique. A change's latency runs from the moment its write returned to
the moment the follower printed the event with ``key`` = its path relative to the tree and
``after.file.sha256`` = the hash of what was written. The follower's own polling is
included, so the figures err high. Target: p99 <= 1 s with no change missing.

    python bench/fs_rpo.py [--changes N] [--rate PER_S] [--files N] [--bytes N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hindsight.demo import make_tree

ROOT = Path(__file__).resolve().parent.parent
CLI = (sys.executable, "-m", "hindsight.cli.main")
TARGET_P99_S = 1.0
EDITABLE = ("test_scenarios", "python-scripts", "src", "n8n_workflows")
"""Top-level folders whose files the default chatbot profile protects; edits go there."""


class Change(NamedTuple):
    """One write: the journal key it should produce, the content hash, when the write returned."""

    key: str
    sha256: str
    written: float


def cli_env(config: Path) -> dict[str, str]:
    """PYTHONPATH to this checkout; HINDSIGHT_CONFIG in case ``--config`` is not honoured."""
    drop = ("HINDSIGHT_KEY", "HINDSIGHT_PASSPHRASE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, "HINDSIGHT_CONFIG": str(config)}


class Hindsight:
    """Runs the CLI against one config, with output to a log file."""

    def __init__(self, home: Path, log: IO[bytes]) -> None:
        self.home = home
        self.config = home / "hindsight.toml"
        self.log = log

    def env(self) -> dict[str, str]:
        """The environment for every command of this run."""
        return cli_env(self.config)

    def run(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Run one command to completion; its output goes to the log."""
        return subprocess.run(
            [*CLI, *args], env=self.env(), cwd=self.home, stdout=self.log, stderr=self.log
        )

    def start(self, *args: str, stdout: int | IO[bytes] | None = None) -> subprocess.Popen[bytes]:
        """Start a long-running command; stderr (and stdout unless given) go to the log."""
        return subprocess.Popen(
            [*CLI, "--config", str(self.config), *args],
            env=self.env(),
            cwd=self.home,
            stdout=self.log if stdout is None else stdout,
            stderr=self.log,
        )


def require_run_command() -> None:
    """Exit with a clear message unless ``hindsight run`` exists."""
    env = cli_env(Path("hindsight.toml"))
    probe = subprocess.run(
        [*CLI, "run", "--help"], env=env, capture_output=True, text=True, errors="replace"
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["(no output)"])[-1]
        sys.exit(
            "fs_rpo: `hindsight run` is not a known command yet, so there is no daemon to "
            f"measure; rerun once it exists.\n  the CLI said: {last}"
        )


class Follower:
    """``journal tail --follow --json`` in a subprocess, noting when each file event arrives."""

    def __init__(self, hs: Hindsight) -> None:
        self.log = hs.log
        self.proc = hs.start(
            "journal", "tail", "--follow", "--json", "-n", "0", stdout=subprocess.PIPE
        )
        self.seen: dict[tuple[str, str], float] = {}
        self.events = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, name="journal-follower", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.monotonic()
            match = file_event(line)
            with self.cond:
                self.events += 1
                if match is not None:
                    self.seen.setdefault(match, now)
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()  # the follower died: wake waiters so they can notice

    def wait_for(self, wanted: set[tuple[str, str]], deadline: float) -> bool:
        """Block until every ``(key, sha256)`` in ``wanted`` was seen, or until ``deadline``."""
        with self.cond:
            while not wanted <= self.seen.keys():
                left = deadline - time.monotonic()
                if left <= 0 or not self.thread.is_alive():
                    return False
                self.cond.wait(min(left, 0.5))
        return True

    def stop(self) -> None:
        """End the follower process."""
        stop_process(self.proc, signal.SIGTERM, 5)


def file_event(line: bytes) -> tuple[str, str] | None:
    """``(key, after.file.sha256)`` of one ``journal tail --json`` line, if it is a file image."""
    try:
        event = json.loads(line)
        key, image = event.get("key"), (event.get("after") or {}).get("file") or {}
    except (ValueError, AttributeError):
        return None
    sha = image.get("sha256") if isinstance(image, dict) else None
    return (key, sha) if isinstance(key, str) and isinstance(sha, str) else None


def stop_process(proc: subprocess.Popen[bytes], sig: int, grace: float) -> int | None:
    """Send ``sig``, wait ``grace`` seconds, then kill; the exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


# --- the changes -------------------------------------------------------------------------------


def plan_changes(tree: Path, n: int, seed: int = 3) -> list[tuple[Path, bytes]]:
    """``n`` writes to distinct paths with unique content: half edits, half new files."""
    rng = random.Random(seed)
    existing = sorted(
        p for top in EDITABLE for p in (tree / top).rglob("*") if p.is_file() and p.suffix != ".bin"
    )
    edits = rng.sample(existing, min(n // 2, len(existing)))
    plan = [(p, p.read_bytes() + marker(p, i, rng)) for i, p in enumerate(edits)]
    for i in range(len(plan), n):
        path = tree / ("test_scenarios" if i % 2 else "python-scripts") / f"rpo_{i:05d}.txt"
        plan.append((path, marker(path, i, rng) * rng.randint(1, 40)))
    return plan


def marker(path: Path, i: int, rng: random.Random) -> bytes:
    """A line that makes the content unique."""
    comment = "//" if path.suffix in (".ts", ".tsx") else "#"
    return f"\n{comment} rpo change {i} {rng.getrandbits(64):016x}\n".encode()


def write_changes(tree: Path, plan: Sequence[tuple[Path, bytes]], rate: float) -> list[Change]:
    """Write the plan at ``rate`` writes per second; when each write returned."""
    changes = []
    start = time.monotonic()
    for i, (path, data) in enumerate(plan):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        path.write_bytes(data)
        key = path.relative_to(tree).as_posix()
        changes.append(Change(key, hashlib.sha256(data).hexdigest(), time.monotonic()))
    return changes


# --- the run -----------------------------------------------------------------------------------


def log_tail(log: IO[bytes], lines: int = 3) -> str:
    """The last lines of the shared log, indented, for error messages."""
    log.flush()
    text = Path(log.name).read_text(encoding="utf-8", errors="replace")
    return "\n".join(f"    | {line}" for line in text.strip().splitlines()[-lines:])


def wait_ready(
    tree: Path, follower: Follower, daemon: subprocess.Popen[bytes], timeout: float
) -> float:
    """Rewrite a probe file once a second until its event arrives; seconds that took.

    The follower may open the journal after the first probe event was appended; rewriting
    the probe covers that.
    """
    probe = tree / "test_scenarios" / "rpo_probe.json"
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < timeout:
        if daemon.poll() is not None:
            sys.exit(
                f"fs_rpo: `hindsight run` exited with {daemon.returncode} while starting:\n"
                + log_tail(follower.log)
            )
        n += 1
        data = json.dumps({"probe": n}).encode()
        probe.write_bytes(data)
        wanted = {(probe.relative_to(tree).as_posix(), hashlib.sha256(data).hexdigest())}
        if follower.wait_for(wanted, time.monotonic() + 1.0):
            return time.monotonic() - start
    sys.exit(
        f"fs_rpo: no event for {probe} within {timeout:.0f} s of starting `hindsight run`:\n"
        + log_tail(follower.log)
    )


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (q in 0..1)."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def report(changes: Sequence[Change], follower: Follower, elapsed: float) -> None:
    """Latency percentiles (a missing event counts as infinitely late) and the verdict."""
    with follower.cond:
        seen = dict(follower.seen)
    lat = sorted(
        max(0.0, seen[(c.key, c.sha256)] - c.written) if (c.key, c.sha256) in seen else math.inf
        for c in changes
    )
    missing = sum(math.isinf(x) for x in lat)
    print(
        f"changes {len(changes)} written in {elapsed:.1f} s ({len(changes) / elapsed:.1f}/s); "
        f"journaled {len(changes) - missing}, missing {missing}"
    )
    p50, p99, worst = percentile(lat, 0.50), percentile(lat, 0.99), lat[-1]
    found = [x for x in lat if not math.isinf(x)]
    mean = sum(found) / len(found) if found else math.inf
    print(f"latency p50 {p50:.3f} s  p99 {p99:.3f} s  max {worst:.3f} s  mean {mean:.3f} s")
    verdict = "PASS" if p99 <= TARGET_P99_S and missing == 0 else "MISS"
    print(f"target p99 <= {TARGET_P99_S} s with nothing missing: {verdict}")


def measure(hs: Hindsight, tree: Path, args: argparse.Namespace) -> None:
    """Start the follower and the daemon, wait until live, write the changes, report."""
    plan = plan_changes(tree, args.changes)
    follower = Follower(hs)
    daemon = hs.start("run")
    try:
        ready = wait_ready(tree, follower, daemon, args.startup_timeout)
        print(f"daemon live {ready:.1f} s after start (initial scan included)")
        start = time.monotonic()
        changes = write_changes(tree, plan, args.rate)
        elapsed = time.monotonic() - start
        wanted = {(c.key, c.sha256) for c in changes}
        follower.wait_for(wanted, time.monotonic() + args.settle)
        if daemon.poll() is not None:
            print(f"warning: `hindsight run` exited with {daemon.returncode} during the run")
        report(changes, follower, elapsed)
    finally:
        code = stop_process(daemon, signal.SIGINT, 30)
        follower.stop()
        print(f"daemon stopped (exit {code}); events followed: {follower.events}")


def main() -> None:
    """Set up a tree and repository, then measure; the tree is removed unless ``--keep``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second")
    parser.add_argument("--files", type=int, default=2_000, help="files in the demo tree")
    parser.add_argument("--bytes", type=int, default=50_000_000, help="bytes in the demo tree")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="default: current dir")
    parser.add_argument("--startup-timeout", type=float, default=120.0, metavar="S")
    parser.add_argument(
        "--settle",
        type=float,
        default=30.0,
        metavar="S",
        help="how long to wait for stragglers after the last write",
    )
    parser.add_argument("--keep", action="store_true", help="keep the tree and repository")
    args = parser.parse_args()
    require_run_command()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "fs_rpo.log"
    base = Path(tempfile.mkdtemp(prefix="fs_rpo-", dir=workdir))
    try:
        with log_path.open("wb") as log:
            hs = Hindsight(base, log)
            tree = base / "tree"
            stats = make_tree(tree, files=args.files, total_bytes=args.bytes)
            print(f"tree {tree}: {stats.files:,} files, {stats.bytes / 2**20:.1f} MiB")
            init = ["init", "--encrypt", "--repo", str(base / "repo"), "--protect", str(tree)]
            if hs.run(*init, "--config", str(hs.config)).returncode != 0:
                sys.exit(f"fs_rpo: `hindsight init` failed; see {log_path}")
            measure(hs, tree, args)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        print(f"daemon and follower output: {log_path}")


if __name__ == "__main__":
    main()
