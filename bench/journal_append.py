"""Journal append/read throughput against the encode-only baseline, in one process.

Appends 1,000,000 conversation-shaped events (BSON documents of ~270-610 bytes) with zstd
and AES-256-GCM on, one fsync per batch of 1,000 (durability "batch"), then reads them all
back as ChangeEvent objects. The baseline encodes the same batches with fastavro + zstd and
no I/O. Absolute rates drift on a noisy machine; the ratios are what to compare.

    python bench/journal_append.py [--events N] [--batch N]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from journal.avro import encode_events
from journal.codec import Zstd
from journal.events import ChangeEvent
from journal.keys import MasterSecret
from journal.log import Durability
from journal.repository import Repository
from tests.journal.eventgen import conversation

TARGETS = {"append": 150_000, "read": 300_000, "append/baseline": 0.5}
POOL = 50_000


def batches(total: int, size: int) -> list[list[ChangeEvent]]:
    """``total`` events in batches of ``size``, drawn from a pool of distinct documents."""
    rng = random.Random(7)
    pool = [conversation(i, rng) for i in range(min(POOL, total))]
    return [[pool[(b + i) % len(pool)] for i in range(size)] for b in range(0, total, size)]


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    """Seconds ``fn`` took, and the byte count it reports."""
    start = time.perf_counter()
    nbytes = fn()
    return time.perf_counter() - start, nbytes


def baseline(work: list[list[ChangeEvent]]) -> int:
    """fastavro + zstd encode of every batch, no I/O, no encryption; returns Avro bytes."""
    zstd, total, seq = Zstd(3), 0, 1
    for batch in work:
        body = encode_events(batch, seq, 1)
        zstd.compress(body)
        total += len(body)
        seq += len(batch)
    return total


def append(path: Path, secret: MasterSecret, work: list[list[ChangeEvent]]) -> int:
    """Append every batch durably (fsync per batch); returns bytes on disk."""
    with Repository.open(path, secret, writable=True, durability=Durability.BATCH) as repo:
        for batch in work:
            repo.log.append(batch)
        return repo.log.stats().bytes


def read(path: Path, secret: MasterSecret, expect: int) -> int:
    """Read every event back as ChangeEvent objects; returns the event count."""
    n = 0
    with Repository.open(path, secret) as repo:
        for batch in repo.log.read_batches():
            n += len(batch)
    assert n == expect, f"read {n} events, appended {expect}"
    return n


def main() -> None:
    """Run baseline, append, read, baseline again; print rates, ratios and verdicts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=1_000)
    args = parser.parse_args()
    work = batches(args.events, args.batch)
    n = sum(len(b) for b in work)
    secret = MasterSecret(key=os.urandom(32), origin="bench key")
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        path = Path(tmp) / "repo"
        Repository.init(path, secret)
        base1, avro_bytes = timed(lambda: baseline(work))
        app, disk = timed(lambda: append(path, secret, work))
        rd, _ = timed(lambda: read(path, secret, n))
        base2, _ = timed(lambda: baseline(work))
    base = (base1 + base2) / 2
    rates = {"baseline": n / base, "append": n / app, "read": n / rd}
    mb = avro_bytes / 1e6
    print(
        f"events {n:,} in batches of {args.batch:,}; avro {mb:.1f} MB, on disk {disk / 1e6:.1f} MB"
    )
    for name, secs in (("baseline", base), ("append", app), ("read", rd)):
        print(f"{name:9s} {n / secs:>12,.0f} events/s  {mb / secs:8.1f} MB/s  ({secs:.2f} s)")
    print(f"baseline runs {n / base1:,.0f} and {n / base2:,.0f} events/s (mean used)")
    ratios = {
        "append/baseline": rates["append"] / rates["baseline"],
        "read/baseline": rates["read"] / rates["baseline"],
    }
    for name, value in ratios.items():
        print(f"ratio {name:16s} {value:.2f}")
    for name, target in TARGETS.items():
        got = ratios.get(name, rates.get(name, 0.0))
        verdict = "PASS" if got >= target else "MISS"
        print(f"target {name:16s} >= {target:,}  got {got:,.2f}  {verdict}")


if __name__ == "__main__":
    main()
