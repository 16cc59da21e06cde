"""``GET /api/status`` under 50 concurrent clients while the daemon captures 1,000 changes/s.

A real ``hindsight run`` (capture and the API in one process, as deployed) protects a tree;
a writer process changes its files at a fixed rate (each file rewritten every few seconds,
so no two changes coalesce). Two phases of equal length run in one process run:

1. capture alone: the writer at the target rate, no API load;
2. capture under API load: the same, while 50 clients request ``/api/status`` back to back.

Each phase's capture rate is the events the journal gained per second (read from the
journal by a separate ``hindsight journal stats``). The API figures are throughput and
latency percentiles of every request of phase 2. Targets (issue #8): p99 < 50 ms, and the
capture rate under load at least 90% of the rate without it. Rate limiting is off for the
run (one token serves all 50 clients).

    python bench/api.py [--rate 1000] [--seconds 20] [--clients 50] [--files 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import leave_cleanly_on_sigterm, progress, scratch_dir

HINDSIGHT = Path(sys.executable).with_name("hindsight")
P99_TARGET_MS = 50.0
CAPTURE_TARGET = 0.9
WRITER = r"""
import os, sys, time
root, rate, seconds, files = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
start, n = time.monotonic(), 0
while (now := time.monotonic() - start) < seconds:
    due = int(now * rate)
    while n < due:
        path = os.path.join(root, f"d{n % 50}", f"f{n % files}.txt")
        with open(path, "w") as f:
            f.write(f"change {n}\n")
        n += 1
    time.sleep(0.002)
print(n)
"""


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="file changes per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=50, help="concurrent API clients")
    parser.add_argument("--files", type=int, default=5000, help="files the writer rotates")
    parser.add_argument("--dir", type=Path, help="where the temporary files go")
    return parser.parse_args()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hindsight(work: Path, *argv: str) -> str:
    done = subprocess.run([HINDSIGHT, *argv], cwd=work, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"hindsight {' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def prepare(work: Path, files: int, port: int) -> str:
    """A protected tree, its config (API on, no rate limit), and a token."""
    tree = work / "app"
    for d in range(50):
        (tree / "src" / f"d{d}").mkdir(parents=True)
    for n in range(files):
        (tree / "src" / f"d{n % 50}" / f"f{n}.txt").write_text("initial\n")
    hindsight(work, "init", "--protect", str(tree))  # the chatbot profile protects src/**
    toml = work / "hindsight.toml"
    head, _, api = toml.read_text().partition("[api]\n")
    api = api.replace("enabled = false", "enabled = true", 1)
    api = api.replace("port = 3000", f"port = {port}", 1)
    api = api.replace("rate_limit_per_minute = 600", "rate_limit_per_minute = 0", 1)
    toml.write_text(f"{head}[api]\n{api}")
    created = json.loads(hindsight(work, "token", "create", "--role", "viewer", "--json"))
    return str(created["token"])


def journal_events(work: Path) -> int:
    return int(json.loads(hindsight(work, "journal", "stats", "--json"))["events"])


async def wait_for_api(base: str, token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"{base}/api/status", headers=headers) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("the daemon's API never answered")


async def load(base: str, token: str, clients: int, seconds: float) -> tuple[list[float], int]:
    """``clients`` loops of GET /api/status for ``seconds``: latencies (s) and failures."""
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    failures = [0]
    end = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def client() -> None:
            while time.monotonic() < end:
                start = time.perf_counter()
                async with http.get(f"{base}/api/status", headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        failures[0] += 1
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, failures[0]


def phase(work: Path, args: argparse.Namespace, base: str, token: str, clients: int) -> dict:
    """One phase: the writer for ``args.seconds``, with ``clients`` API clients (0: none)."""
    before, start = journal_events(work), time.monotonic()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(work / "app" / "src"), str(args.rate), str(args.seconds),
         str(args.files)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    latencies, failures = (
        asyncio.run(load(base, token, clients, args.seconds)) if clients else ([], 0)
    )
    changes = int(writer.communicate(timeout=args.seconds + 60)[0])
    time.sleep(2.0)  # the last changes settle and are captured
    captured, elapsed = journal_events(work) - before, time.monotonic() - start - 2.0
    return {
        "changes": changes,
        "captured": captured,
        "capture_rate": captured / args.seconds,
        "elapsed": elapsed,
        "latencies": latencies,
        "failures": failures,
    }


def main() -> None:
    args = options()
    leave_cleanly_on_sigterm()
    work = scratch_dir("bench-api-", args.dir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = None
    try:
        progress(f"making a tree of {args.files:,} files and its repository")
        token = prepare(work, args.files, port)
        daemon = subprocess.Popen([HINDSIGHT, "run"], cwd=work, stderr=subprocess.DEVNULL)
        asyncio.run(wait_for_api(base, token))
        time.sleep(3.0)  # past the start-up scan
        progress(f"phase 1: {args.rate:,} changes/s for {args.seconds:.0f} s, no API load")
        alone = phase(work, args, base, token, 0)
        progress(f"phase 2: the same, with {args.clients} clients on GET /api/status")
        loaded = phase(work, args, base, token, args.clients)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    report(args, alone, loaded)


def report(args: argparse.Namespace, alone: dict, loaded: dict) -> None:
    lat = sorted(loaded["latencies"])
    ms = [x * 1000 for x in lat]
    p = {q: ms[min(len(ms) - 1, int(len(ms) * q / 100))] for q in (50, 90, 99)}
    ratio = loaded["capture_rate"] / alone["capture_rate"] if alone["capture_rate"] else 0.0
    print(f"{os.cpu_count()} CPUs; daemon (capture + API) and the {args.clients} clients and the "
          "writer share them; rate limiting off")  # fmt: skip
    for name, ph in (("capture alone", alone), ("capture + API load", loaded)):
        print(f"{name:20s} changes {ph['changes']:>7,}  captured {ph['captured']:>7,} events  "
              f"{ph['capture_rate']:>8,.0f} events/s")  # fmt: skip
    print(f"GET /api/status      {len(lat):,} requests in {args.seconds:.0f} s = "
          f"{len(lat) / args.seconds:,.0f} req/s; failures {loaded['failures']}")  # fmt: skip
    print(f"latency ms           p50 {p[50]:.1f}  p90 {p[90]:.1f}  p99 {p[99]:.1f}  "
          f"max {ms[-1]:.1f}  mean {statistics.fmean(ms):.1f}")  # fmt: skip
    print(f"ratio capture under load / alone {ratio:.2f}")
    ok_p99 = p[99] < P99_TARGET_MS and loaded["failures"] == 0
    print(f"target status p99 < {P99_TARGET_MS:.0f} ms  got {p[99]:.1f} ms  "
          f"{'PASS' if ok_p99 else 'MISS'}")  # fmt: skip
    print(f"target capture rate under load >= {CAPTURE_TARGET:.0%} of alone  got {ratio:.0%}  "
          f"{'PASS' if ratio >= CAPTURE_TARGET else 'MISS'}")  # fmt: skip


if __name__ == "__main__":
    main()
