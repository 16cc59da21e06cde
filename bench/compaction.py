"""Snapshot time against data size and delta size: incremental against a full rebuild, one run.

Two series of conversation documents (``tests/journal/eventgen.py``), each point a repository
holding a base of documents (appended 10,000 at a time), a snapshot of the base, then a delta
of events (appended at most 1,000 at a time):

- *flat*: bases of 10k / 100k / 1M documents, each followed by a 1,000-event delta. The
  incremental snapshot (the base snapshot plus the delta) should take about the same time at
  every size.
- *delta*: one base of 100k documents followed by deltas of 1k / 10k / 100k events (the
  first events of one 100k delta). The incremental snapshot should grow with the delta.

A delta is 80% updates of existing documents (UPDATE or REPLACE with a new full image), picked
at random over the whole key space, and 20% inserts of new documents: it touches keys across
the whole collection, the worst case for a layered store. Each point's baseline is a full
rebuild of the same cut: ``take()`` over the same journal into an empty snapshot catalog, so
with no previous snapshot.

Each measurement runs in a fresh spawned process, so the peak RSS shown is its own. There a
small warm-up snapshot runs first, then ``take()`` is timed ``--repeat`` times (the snapshot
and its parts are removed between runs; the median counts) when it replays at most 200k
events, and more often while the runs add up to under half a second; a bigger take is timed
once. Absolute times drift on a noisy machine; the ratios are what to compare. Targets are
reported, not asserted: the exit code is 0 unless something failed. ``--profile`` adds
cProfile listings of the incremental take at the largest point of each series (a run of its
own, not timed). Repositories live in a temporary directory (``--dir``, default the
system's), removed at the end.

    python bench/compaction.py [--sizes N,N,..] [--deltas N,N,..] [--base N] [--quick]
                               [--encrypted | --both] [--repeat N] [--dir DIR] [--profile]
                               [--json]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import random
import resource
import shutil
import statistics
import sys
import sysconfig
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import leave_cleanly_on_sigterm, progress, scratch_dir
from compaction.parquet_store import ParquetStore
from compaction.snapshot import PART_DIR, Snapshot
from compaction.snapshots import Snapshots, snapshots_of
from journal.events import ChangeEvent, Op
from journal.keys import MasterSecret
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository
from journal.stores.local import LocalStore
from tests.journal.eventgen import conversation

SIZES = (10_000, 100_000, 1_000_000)
DELTAS = (1_000, 10_000, 100_000)
BASE = 100_000
FLAT_DELTA = 1_000
QUICK = 10  # --quick divides every default by this
FLAT_MAX = 3.0  # size x100: the incremental time may grow at most this much
DELTA_MIN = 10.0  # delta x100: the incremental time should grow at least this much
UPDATES = 0.8  # share of a delta that rewrites existing documents; the rest are inserts
BATCH = 10_000  # base events per append, and per generated chunk
DELTA_BATCH = 1_000  # most delta events per append (capture appends at most 2,000 at a time)
REPEAT_UPTO = 200_000  # a take replaying more events than this is timed once
MIN_SECONDS, MAX_RUNS = 0.5, 15  # cheap takes are repeated up to these
WARM_UP = 500  # events in each of the warm-up snapshots
T0_US = 1_764_000_000_000_000
META = {META_DEPLOYMENT: "mongodb"}
# shortened away in profile listings
PREFIXES = [sysconfig.get_paths()[k] + "/" for k in ("purelib", "stdlib")]
PREFIXES.append(str(Path(__file__).resolve().parent.parent) + "/")


# --- the workload -------------------------------------------------------------------------------


def base_batches(n: int, rng: random.Random) -> Iterator[list[ChangeEvent]]:
    """Inserts of documents 0..n-1, ``BATCH`` at a time."""
    for start in range(0, n, BATCH):
        yield [
            conversation(i, rng)._replace(meta=META) for i in range(start, min(n, start + BATCH))
        ]


def delta_batches(base: int, n: int, rng: random.Random, size: int) -> Iterator[list[ChangeEvent]]:
    """``n`` events after ``base`` documents, ``size`` at a time: updates anywhere, or inserts."""
    docs = base
    for start in range(0, n, size):
        batch = []
        for j in range(start, min(n, start + size)):
            if rng.random() < UPDATES:
                op, doc = rng.choice((Op.UPDATE, Op.REPLACE)), rng.randrange(docs)
            else:
                op, doc, docs = Op.INSERT, docs, docs + 1
            ts, where = T0_US + (base + j) * 1000, f"resume-{base + j}".encode()
            event = conversation(doc, rng)  # a fresh image of document ``doc``
            batch.append(event._replace(op=op, source_ts=ts, position=where, meta=META))
        yield batch


# --- one measurement, in its own process ----------------------------------------------------------


class Job(NamedTuple):
    """One ``take()`` to time: up to seq ``upto``, incrementally or into an empty catalog."""

    root: str  # the repository
    key: bytes | None  # its master key when encrypted; a plain one opens without
    upto: int
    previous: int  # the cut the snapshot must build on (0: none)
    full: bool  # into an empty catalog next to the repository: a rebuild from scratch
    runs: int
    keep: bool = False  # keep the snapshot (the base) instead of undoing each run
    profile: str | None = None  # write cProfile stats of the timed runs here


class Timing(NamedTuple):
    """What a job measured: seconds per run and what its (first) take wrote."""

    seconds: list[float]
    parts: int  # Parquet files written
    written: int  # their bytes
    layers: int  # parts the snapshot's table consists of
    rows: int  # live rows in the snapshot
    rss: int  # peak RSS of the process, bytes

    @property
    def median(self) -> float:
        """The median run."""
        return statistics.median(self.seconds)


def measure(job: Job) -> Timing:
    """Open the repository read-only, warm up, then time ``take()`` ``job.runs`` times.

    Cheap takes run more often, until they add up to ``MIN_SECONDS``: their medians are the
    denominators of the ratios.
    """
    secret = MasterSecret(key=job.key, origin="bench key") if job.key else None
    scratch = Path(job.root).with_name(f"scratch-{os.getpid()}")
    with Repository.open(Path(job.root), secret) as repo:
        snaps = snapshots_of(repo)
        warm_up(repo, empty_catalog(snaps, scratch))
        shutil.rmtree(scratch)
        profiler = cProfile.Profile() if job.profile else None
        seconds: list[float] = []
        while len(seconds) < job.runs or (
            job.runs > 1 and sum(seconds) < MIN_SECONDS and len(seconds) < MAX_RUNS
        ):
            target = empty_catalog(snaps, scratch) if job.full else snaps
            secs, snap, written = timed_take(repo, target, job.upto, profiler)
            check(snap, job)
            if not seconds:
                first = (len(written), sum(written.values()), snap)
            seconds.append(secs)
            undo(job, target, snap, written, scratch)
    if profiler and job.profile:
        profiler.dump_stats(job.profile)
    parts, nbytes, snap = first
    table = next(iter(snap.tables.values()))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return Timing(seconds, parts, nbytes, len(table.parts), table.rows, rss)


def timed_take(
    repo: Repository, target: Snapshots, upto: int, profiler: cProfile.Profile | None
) -> tuple[float, Snapshot, dict[str, int]]:
    """Seconds ``target.take()`` took, the snapshot, and the part files it wrote (name: size)."""
    before = part_files(target)
    start = time.perf_counter()
    if profiler:
        profiler.enable()
    snap = target.take(repo.log, upto=upto)
    if profiler:
        profiler.disable()
    seconds = time.perf_counter() - start
    written = {k: v for k, v in part_files(target).items() if k not in before}
    return seconds, snap, written


def empty_catalog(snaps: Snapshots, root: Path) -> Snapshots:
    """A snapshot catalog with nothing in it, sealed like ``snaps``, at ``root``."""
    root.mkdir()
    parquet = ParquetStore(root, snaps.parquet.keys)
    scratch = Snapshots(root, LocalStore(root), parquet, snaps.catalog.cipher)
    scratch.hasher = snaps.hasher
    return scratch


def warm_up(repo: Repository, scratch: Snapshots) -> None:
    """A full and an incremental snapshot of the first events: imports and caches are hot."""
    scratch.take(repo.log, upto=WARM_UP)
    scratch.take(repo.log, upto=2 * WARM_UP)


def part_files(snaps: Snapshots) -> dict[str, int]:
    """Size of each Parquet part under the catalog's root, by name."""
    return {p.name: p.stat().st_size for p in (snaps.catalog.root / PART_DIR).glob("*.parquet")}


def check(snap: Snapshot, job: Job) -> None:
    """The snapshot has the cut asked for and built on the expected one."""
    built_on = int(snap.previous) if snap.previous else 0
    if snap.cut_seq != job.upto or built_on != job.previous:
        raise RuntimeError(f"snapshot at {snap.cut_seq} on {snap.previous}, wanted {job}")


def undo(
    job: Job, target: Snapshots, snap: Snapshot, written: dict[str, int], scratch: Path
) -> None:
    """Remove what the run added, so the next run does the same work."""
    if job.full:
        shutil.rmtree(scratch)
    elif not job.keep:
        target.catalog.delete(snap.id)
        for name in written:
            (target.catalog.root / PART_DIR / name).unlink()


# --- the series -----------------------------------------------------------------------------------


class Point(NamedTuple):
    """One point of a series: the base, the delta, and both timings."""

    base: int
    delta: int
    incremental: Timing
    full: Timing


class Bench:
    """Builds repositories under ``work`` and runs each measurement in a fresh process."""

    def __init__(self, work: Path, encrypted: bool, repeat: int, pool: ProcessPoolExecutor) -> None:
        self.work, self.repeat, self.pool = work, repeat, pool
        self.key = os.urandom(32) if encrypted else None
        self.profiles: dict[str, Path] = {}

    def repository(self, name: str, base: int, delta: int, batch: int) -> tuple[Path, int]:
        """A repository: ``base`` inserts, a snapshot of them, ``delta`` events; (path, cut).

        The delta is appended ``batch`` events at a time: a snapshot of the first ``batch``
        events should not have to decode a bigger frame.
        """
        root = self.work / name
        secret = MasterSecret(key=self.key or os.urandom(32), origin="bench key")
        Repository.init(root, secret, encrypt_all=self.key is not None)
        rng = random.Random(base)
        cut = self.append(root, base_batches(base, rng))
        self.run(Job(str(root), self.key, cut, 0, full=False, runs=1, keep=True))
        self.append(root, delta_batches(base, delta, rng, min(batch, DELTA_BATCH)))
        return root, cut

    def append(self, root: Path, batches: Iterator[list[ChangeEvent]]) -> int:
        """Append every batch; the last seq."""
        secret = MasterSecret(key=self.key, origin="bench key") if self.key else None
        with Repository.open(root, secret, writable=True) as repo:
            for batch in batches:
                repo.log.append(batch)
            return repo.log.next_seq - 1

    def point(self, root: Path, cut: int, base: int, delta: int, profile: str = "") -> Point:
        """Time the incremental snapshot of ``delta`` events after ``cut``, then a rebuild."""
        upto = cut + delta
        inc = Job(str(root), self.key, upto, cut, False, self.runs(delta))
        full = Job(str(root), self.key, upto, 0, True, self.runs(upto))
        point = Point(base, delta, self.run(inc), self.run(full))
        if profile:  # a run of its own: profiling slows the timed runs down
            stats = self.profiles[profile] = self.work / f"profile-{len(self.profiles)}.prof"
            self.run(inc._replace(runs=1, profile=str(stats)))
        return point

    def runs(self, events: int) -> int:
        """Timed runs of a take that replays ``events``."""
        return self.repeat if events <= REPEAT_UPTO else 1

    def run(self, job: Job) -> Timing:
        """``measure(job)`` in a fresh process."""
        return self.pool.submit(measure, job).result()


def flat_series(bench: Bench, sizes: list[int], delta: int, profile: bool) -> list[Point]:
    """A ``delta``-event snapshot after each base size; the largest profiled if asked."""
    points = []
    for size in sizes:
        progress(f"flat: base {size:,} documents, delta {delta:,}")
        root, cut = bench.repository(f"flat-{size}", size, delta, delta)
        label = f"incremental, base {size:,}, delta {delta:,}" if profile else ""
        points.append(bench.point(root, cut, size, delta, label if size == max(sizes) else ""))
        shutil.rmtree(root)
    return points


def delta_series(bench: Bench, base: int, deltas: list[int], profile: bool) -> list[Point]:
    """Snapshots of each delta after one base (the first events of the largest delta)."""
    progress(f"delta: base {base:,} documents, deltas {', '.join(f'{d:,}' for d in deltas)}")
    root, cut = bench.repository("delta", base, max(deltas), min(deltas))
    points = []
    for delta in deltas:
        label = f"incremental, base {base:,}, delta {delta:,}" if profile else ""
        points.append(bench.point(root, cut, base, delta, label if delta == max(deltas) else ""))
    shutil.rmtree(root)
    return points


# --- the report ---------------------------------------------------------------------------------


class Target(NamedTuple):
    """A ratio's target: ``largest/smallest`` of a series' incremental medians."""

    series: str
    words: str
    op: str
    bound: float

    def met(self, got: float) -> bool:
        """Whether ``got`` meets the target."""
        return got <= self.bound if self.op == "<=" else got >= self.bound


TARGETS = (
    Target("flat", "flat series", "<=", FLAT_MAX),
    Target("delta", "delta series grows", ">=", DELTA_MIN),
)
HEADER = (
    f"{'base':>10s} {'delta':>8s} {'events':>10s} {'incr s':>8s} {'full s':>8s} "
    f"{'incr/full':>9s} {'runs':>5s} {'parts':>5s} {'written':>10s} {'layers':>6s} "
    f"{'RSS incr':>9s} {'RSS full':>9s}"
)


def spread(points: list[Point], full: bool = False) -> float:
    """Median time at the largest point over that at the smallest."""
    times = [(p.full if full else p.incremental).median for p in points]
    return times[-1] / times[0]


def row(p: Point) -> str:
    """One table row."""
    inc, full = p.incremental, p.full
    return (
        f"{p.base:>10,} {p.delta:>8,} {p.base + p.delta:>10,} {inc.median:>8.3f} "
        f"{full.median:>8.3f} {inc.median / full.median:>9.3f} "
        f"{len(inc.seconds):>2}/{len(full.seconds):<2} {inc.parts:>5} "
        f"{inc.written / 1e6:>7.2f} MB {inc.layers:>6} {inc.rss / 2**20:>6.0f} MB "
        f"{full.rss / 2**20:>6.0f} MB"
    )


def report(mode: str, series: dict[str, list[Point]]) -> None:
    """Print both tables, each series' largest/smallest ratio and the targets."""
    flat, delta = series["flat"], series["delta"]
    titles = {
        "flat": f"flat series: base size varies, delta {flat[0].delta:,} events",
        "delta": f"delta series: base {delta[0].base:,} documents, delta varies",
    }
    for name, points in series.items():
        print(f"{mode}, {titles[name]}")
        print(HEADER)
        for p in points:
            print(row(p))
    for name, points, what, grows in (
        ("flat", flat, "size", flat[-1].base / flat[0].base),
        ("delta", delta, "delta", delta[-1].delta / delta[0].delta),
    ):
        print(
            f"ratio {mode} {name:5s} largest/smallest  incremental {spread(points):.2f}  "
            f"full {spread(points, full=True):.2f}  ({what} x{grows:,.0f})"
        )
    for t in TARGETS:
        got = spread(series[t.series])
        verdict = "PASS" if t.met(got) else "FAIL"
        bound = f"largest/smallest {t.op} {t.bound}"
        print(f"target {mode} {t.words:18s} {bound}  got {got:.2f}  {verdict}")


def as_json(mode: str, series: dict[str, list[Point]]) -> dict[str, Any]:
    """The results of one mode as JSON."""
    out: dict[str, Any] = {"mode": mode, "series": {}, "targets": []}
    for name, points in series.items():
        out["series"][name] = {
            "points": [point_json(p) for p in points],
            "largest/smallest": spread(points),
            "full largest/smallest": spread(points, full=True),
        }
    for t in TARGETS:
        got = spread(series[t.series])
        out["targets"].append({**t._asdict(), "got": got, "met": t.met(got)})
    return out


def point_json(p: Point) -> dict[str, Any]:
    """One point as JSON: both timings with their medians, and their ratio."""
    inc, full = p.incremental, p.full
    return {
        "base": p.base,
        "delta": p.delta,
        "incremental": {**inc._asdict(), "median": inc.median},
        "full": {**full._asdict(), "median": full.median},
        "incremental/full": inc.median / full.median,
    }


def describe(args: argparse.Namespace) -> str:
    """One line on the workload and the method."""
    return (
        f"conversation documents of ~300-600 B; deltas {UPDATES:.0%} UPDATE/REPLACE of random "
        f"existing documents, {1 - UPDATES:.0%} inserts; full = take() into an empty catalog; "
        f"each take in a fresh process, median of >= {args.repeat} runs (more while under "
        f"{MIN_SECONDS} s in all) when it replays <= {REPEAT_UPTO:,} events, else 1 run; "
        f"{os.cpu_count()} CPUs"
    )


def print_profiles(profiles: dict[str, Path], out: Any) -> None:
    """Top functions of each profiled take, by own time and by cumulative time."""
    for label, path in profiles.items():
        for order, top in (("tottime", 25), ("cumulative", 30)):
            text = io.StringIO()
            pstats.Stats(str(path), stream=text).sort_stats(order).print_stats(top)
            print(f"--- profile: {label}, by {order}", file=out)
            lines = text.getvalue().split("\n", 4)[-1].rstrip()
            for prefix in PREFIXES:
                lines = lines.replace(prefix, "")
            print(lines, file=out)


# --- main ---------------------------------------------------------------------------------------


def counts(text: str) -> list[int]:
    """``"1000,10000"`` as sorted integers."""
    return sorted(int(x.replace("_", "")) for x in text.split(",") if x.strip())


def options() -> argparse.Namespace:
    """Parse the command line; --quick fills what was not given with a tenth of each default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=counts, help="flat series base sizes, e.g. 10000,100000")
    parser.add_argument("--deltas", type=counts, help="delta series delta sizes")
    parser.add_argument("--base", type=int, help="delta series base size")
    parser.add_argument("--quick", action="store_true", help="every default / 10: a smoke run")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--encrypted", action="store_true", help="encrypted repository only")
    modes.add_argument("--both", action="store_true", help="plain, then encrypted")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (median) of each take")
    parser.add_argument("--dir", type=Path, help="where the temporary repositories go")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest takes")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    scale = QUICK if args.quick else 1
    args.sizes = args.sizes or [n // scale for n in SIZES]
    args.deltas = args.deltas or [n // scale for n in DELTAS]
    args.base = args.base or BASE // scale
    args.flat_delta = FLAT_DELTA // scale
    return args


def main() -> None:
    """Run each mode's two series, print tables, ratios and targets; remove everything."""
    args = options()
    leave_cleanly_on_sigterm()
    modes = [False, True] if args.both else [args.encrypted]
    work = scratch_dir("bench-compaction-", args.dir)
    results, profiles = [], {}
    if not args.json:
        print(describe(args))
    spawn = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(1, mp_context=spawn, max_tasks_per_child=1) as pool:
            for encrypted in modes:
                mode = "encrypted" if encrypted else "plain"
                bench = Bench(work / mode, encrypted, args.repeat, pool)
                (work / mode).mkdir()
                series = {
                    "flat": flat_series(bench, args.sizes, args.flat_delta, args.profile),
                    "delta": delta_series(bench, args.base, args.deltas, args.profile),
                }
                results.append((mode, series))
                if not args.json:
                    report(mode, series)
                profiles.update({f"{mode}: {k}": v for k, v in bench.profiles.items()})
        print_profiles(profiles, sys.stderr if args.json else sys.stdout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        runs = [as_json(mode, series) for mode, series in results]
        doc = {"cpus": os.cpu_count(), "generator_peak_rss_mb": round(peak), "results": runs}
        print(json.dumps(doc, indent=1))
    else:
        print(f"generator process peak RSS {peak:,.0f} MB")


if __name__ == "__main__":
    main()
