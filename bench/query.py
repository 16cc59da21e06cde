"""Audit queries over 10,000,000 events: ``hindsight sql`` against DuckDB on the files, one run.

The history is written directly, not captured: appending 10M events to a journal and
exporting them takes far longer than the queries being measured. Rows are generated with
``pyarrow.compute`` (a chatbot workload: 90% MongoDB events on 8 collections of 1M
documents, keys drawn with a skew so some documents change often, 65% updates, 10% replaces,
20% inserts, 5% deletes; 10% file events on 20,000 files; 0.1% system markers), spread over
30 days, and written as history files of ``--file-rows`` events each through
``compaction/history.py``'s own machinery (``HISTORY_SCHEMA``, ``ParquetStore``: the same
row groups, compression, and in an ``--encrypted`` repository the same sealing and file
keys), with a ``history/index.json`` naming them, into a repository whose journal is empty
(so ``events`` has no tail).

Three queries (changes per namespace per hour; the 100 most-changed keys; deletions in a
one-day range) each run two ways: through ``QueryEngine`` (the ``hindsight sql`` path:
opening the history index, creating the views, the statement filter, locking the
connection, the query and fetching every row), and by DuckDB directly: a fresh connection
with a view over ``read_parquet`` of the same files (for ``--encrypted``, of a plain copy of
the same rows). Both results must be equal. Each side runs once untimed (the page cache),
then ``--repeat`` times alternating; the medians count. Targets are reported, not asserted:
the exit code is 0 unless a result differs. Everything lives in a temporary directory
(``--dir``, default the system's), removed at the end.

Last, the scan of ``--scan-files`` (default 100,000) unchanged protected files, stat only,
as ``bench/scan.py`` measures it (target: under 10 s).

    python bench/query.py [--events N] [--file-rows N] [--quick] [--encrypted]
                          [--repeat N] [--dir DIR] [--scan-files N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scan as bench_scan
from bench.common import leave_cleanly_on_sigterm, scratch_dir
from compaction.history import HISTORY_DIR, HISTORY_SCHEMA, INDEX_FILE, history_file_name
from compaction.parquet_store import ParquetStore
from journal.fsutil import atomic_write
from journal.keys import MasterSecret
from journal.repository import Repository
from query.engine import QueryEngine

EVENTS = 10_000_000
FILE_ROWS = 250_000  # about one 64 MiB segment of conversation events
QUICK = 10  # --quick divides the events (and the scan's files) by this
SCAN_FILES = 100_000
DAYS = 30
T0_US = 1_764_000_000_000_000
RATIO_TARGET = 1.5
SECONDS_TARGET = 2.0
BATCH = 65_536  # rows per generated record batch

COLLECTIONS = [
    "chatbot.conversations", "chatbot.messages", "chatbot.users", "chatbot.quotes",
    "chatbot.products", "chatbot.orders", "chatbot.sessions", "chatbot.feedback",
]  # fmt: skip
DOCS = 1_000_000
FILES = 20_000
MONGO_OPS = (["INSERT", "UPDATE", "REPLACE", "DELETE"], [0.20, 0.65, 0.10, 0.05])
FILE_OPS = (["CREATE", "MODIFY", "DELETE", "MOVE"], [0.20, 0.70, 0.05, 0.05])
DELETE_DAY = 14  # the day of the deletions query

QUERIES = {
    "changes-per-namespace-hour": (
        "SELECT namespace, date_trunc('hour', source_ts) AS hour, count(*) AS changes "
        "FROM events GROUP BY ALL ORDER BY ALL"
    ),
    "top-100-keys": (
        "SELECT namespace, key, count(*) AS changes FROM events "
        "GROUP BY ALL ORDER BY changes DESC, namespace, key LIMIT 100"
    ),
    "deletions-in-range": (
        "SELECT seq, source_ts, source, namespace, key FROM events WHERE op = 'DELETE' "
        "AND source_ts >= make_timestamptz({lo}::BIGINT) "
        "AND source_ts < make_timestamptz({hi}::BIGINT) ORDER BY seq"
    ),
}


# --- the history --------------------------------------------------------------------------------


class Pools(NamedTuple):
    """Strings drawn from by index, so 10M rows need no 10M Python strings."""

    doc_keys: pa.Array
    file_keys: pa.Array
    hashes: pa.Array


def pools() -> Pools:
    """Document keys, file paths and a pool of SHA-256 hex strings."""
    doc_keys = pa.array([f'{{"$oid": "{os.urandom(12).hex()}"}}' for _ in range(DOCS)])
    file_keys = pa.array([f"kb/doc_{i:05d}.json" for i in range(FILES)])
    hashes = pa.array([os.urandom(32).hex() for _ in range(200_000)])
    return Pools(doc_keys, file_keys, hashes)


class Draws:
    """Random columns (pyarrow compute: no per-row Python), reproducible from a seed."""

    def __init__(self, seed: int, n: int) -> None:
        self.seed, self.n = seed, n

    def uniform(self) -> pa.Array:
        self.seed += 1
        return pc.random(self.n, initializer=self.seed)

    def ints(self, low: int, high: int) -> pa.Array:
        """Uniform integers in ``[low, high)``."""
        scaled = pc.floor(pc.multiply(self.uniform(), float(high - low)))
        return pc.add(pc.cast(scaled, pa.int64()), low)

    def skewed(self, high: int) -> pa.Array:
        """Integers in ``[0, high)``, log-uniform: small ones (hot documents) far likelier."""
        return pc.cast(pc.subtract(pc.floor(pc.power(float(high), self.uniform())), 1), pa.int64())

    def choice(self, weights: list[float]) -> pa.Array:
        """Codes ``0 .. len(weights) - 1`` drawn with these weights (int32)."""
        u, code, edge = self.uniform(), pa.array([0] * self.n, pa.int32()), 0.0
        for weight in weights[:-1]:
            edge += weight
            code = pc.add(code, pc.cast(pc.greater_equal(u, edge), pa.int32()))
        return code


def _dictionary(codes: pa.Array, values: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pc.cast(codes, pa.int32()), pa.array(values))


def _where(mask: pa.Array, value: pa.Array | pa.Scalar, other: pa.Array | pa.Scalar) -> pa.Array:
    return pc.if_else(mask, value, other)


def history_batch(first: int, n: int, segment: str, p: Pools, step: int) -> pa.RecordBatch:
    """Events ``first .. first + n - 1``, ``step`` µs apart, as a ``HISTORY_SCHEMA`` batch."""
    draw = Draws(first, n)
    seq = pa.array(range(first, first + n), pa.int64())
    source_ts = pc.add(pc.add(pc.multiply(seq, step), T0_US), draw.ints(0, step))
    kind = draw.choice([0.899, 0.1, 0.001])  # MongoDB, files, system
    mongo, files, system = (pc.equal(kind, k) for k in (0, 1, 2))
    doc = _where(pc.less(draw.uniform(), 0.5), draw.skewed(DOCS), draw.ints(0, DOCS))
    op_names = MONGO_OPS[0] + FILE_OPS[0] + ["MARKER"]
    file_op = pc.add(draw.choice(FILE_OPS[1]), 4)
    op = _where(mongo, draw.choice(MONGO_OPS[1]), _where(files, file_op, 8))
    deleted = pc.or_(pc.or_(pc.equal(op, 3), pc.equal(op, 6)), pc.equal(op, 8))
    namespace = _where(
        mongo, pc.cast(pc.remainder(doc, len(COLLECTIONS)), pa.int32()), _where(files, 8, 9)
    )
    key = _where(mongo, p.doc_keys.take(doc), p.file_keys.take(draw.ints(0, FILES)))
    key = _where(system, pa.scalar("scan-end"), key)
    no_text = pa.scalar(None, pa.string())
    hashes = _where(deleted, no_text, p.hashes.take(draw.ints(0, len(p.hashes))))
    timestamp = pa.timestamp("us", tz="UTC")
    columns = [
        seq,
        pc.cast(source_ts, timestamp),
        pc.cast(pc.add(source_ts, draw.ints(1_000, 500_000)), timestamp),
        _dictionary(kind, ["MONGODB", "FILESYSTEM", "SYSTEM"]),
        _dictionary(_where(mongo, 0, pa.scalar(None, pa.int32())), ["mongodb"]),
        _dictionary(namespace, [*COLLECTIONS, "app", "scan"]),
        key,
        _dictionary(op, op_names),
        _where(deleted, pa.scalar(None, pa.int64()), draw.ints(200, 4000)),
        hashes,
        _where(pc.and_(files, pc.invert(deleted)), hashes, no_text),
        pa.nulls(n, pa.string()),
        _where(pc.equal(op, 7), key, no_text),
        _dictionary(pa.array([0] * n, pa.int32()), [segment]),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=HISTORY_SCHEMA)


def file_batches(
    first: int, rows: int, segment: str, p: Pools, step: int
) -> Iterator[pa.RecordBatch]:
    """One history file's rows, ``BATCH`` at a time; the same rows for the same ``first``."""
    for start in range(first, first + rows, BATCH):
        yield history_batch(start, min(BATCH, first + rows - start), segment, p, step)


def write_history(root: Path, keys: Any, events: int, file_rows: int, p: Pools) -> list[str]:
    """History files of ``events`` events and their index in ``root``; their paths."""
    store = ParquetStore(root, keys)
    step = DAYS * 86_400_000_000 // events  # the events span DAYS days
    entries: list[dict[str, Any]] = []
    for first in range(1, events + 1, file_rows):
        rows = min(file_rows, events - first + 1)
        segment = f"{first:020d}.seg"
        name = history_file_name(segment)
        batches = file_batches(first, rows, segment, p, step)
        stored = store.write(HISTORY_DIR, HISTORY_SCHEMA, batches, name=name.rpartition("/")[2])
        entries.append(
            {"segment": segment, "file": stored.file, "first_seq": first,
             "last_seq": first + rows - 1, "rows": stored.rows, "size": stored.size,
             "sha256": stored.sha256}
        )  # fmt: skip
        progress(f"history: {first + rows - 1:,} / {events:,} events")
    doc = {"format": 1, "files": entries}
    atomic_write(root / INDEX_FILE, json.dumps(doc, indent=1).encode())
    return [str(root / e["file"]) for e in entries]


# --- the two ways -------------------------------------------------------------------------------


def via_engine(root: Path, secret: MasterSecret) -> Callable[[str], tuple[float, list[Any]]]:
    """``hindsight sql``: a QueryEngine made for each statement, as the command does."""
    repo = Repository.open(root, secret)

    def run(sql: str) -> tuple[float, list[Any]]:
        start = time.perf_counter()
        with QueryEngine(repo) as engine:
            rows = list(engine.sql(sql))
        return time.perf_counter() - start, rows

    return run


def via_duckdb(files: list[str]) -> Callable[[str], tuple[float, list[Any]]]:
    """DuckDB on the files: a fresh connection and a view over read_parquet of them."""

    def run(sql: str) -> tuple[float, list[Any]]:
        start = time.perf_counter()
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        names = ", ".join(f"'{f}'" for f in files)
        con.execute(f"CREATE VIEW events AS SELECT * FROM read_parquet([{names}])")
        rows = con.execute(sql).fetchall()
        con.close()
        return time.perf_counter() - start, rows

    return run


class Timing(NamedTuple):
    """One query's runs each way."""

    name: str
    engine: list[float]
    direct: list[float]
    rows: int

    @property
    def ratio(self) -> float:
        return statistics.median(self.engine) / statistics.median(self.direct)


def time_query(name: str, sql: str, engine: Any, direct: Any, repeat: int) -> Timing:
    """Warm up, then ``repeat`` alternating runs; the results must be equal."""
    _, want = direct(sql)
    _, got = engine(sql)
    if got != want:
        raise SystemExit(f"FAILED: {name}: hindsight sql gave {len(got)} rows, DuckDB {len(want)}")
    engine_s, direct_s = [], []
    for _ in range(repeat):
        engine_s.append(engine(sql)[0])
        direct_s.append(direct(sql)[0])
    return Timing(name, engine_s, direct_s, len(want))


# --- the scan part ------------------------------------------------------------------------------
# ``bench/scan.py`` measures the scan of unchanged protected files (stat only); it runs here
# too, after the queries, unless ``--scan-files 0``.


def scan_part(args: argparse.Namespace) -> None:
    """The scan of ``--scan-files`` unchanged protected files (bench/scan.py's run)."""
    print(f"scan: {args.scan_files:,} unchanged protected files (bench/scan.py)", flush=True)
    bench_scan.measure(
        argparse.Namespace(
            files=args.scan_files, repeat=args.repeat, encrypted=args.encrypted,
            snapshot=False, dir=args.dir,
        )
    )  # fmt: skip


# --- report -------------------------------------------------------------------------------------


def report(timings: list[Timing]) -> None:
    """One line per query, then the targets."""
    print(
        f"  {'query':28s} {'rows':>8s} {'hindsight sql':>14s} {'duckdb direct':>14s} {'ratio':>6s}"
    )
    for t in timings:
        e, d = statistics.median(t.engine), statistics.median(t.direct)
        print(f"  {t.name:28s} {t.rows:>8,} {e:>12.3f} s {d:>12.3f} s {t.ratio:>6.2f}")
    for t in timings:
        verdict = "PASS" if t.ratio <= RATIO_TARGET else "MISS"
        print(f"target {t.name} ratio <= {RATIO_TARGET}  got {t.ratio:.2f}  {verdict}")
    for t in timings:
        seconds = statistics.median(t.engine)
        verdict = "PASS" if seconds < SECONDS_TARGET else "MISS"
        print(f"target {t.name} seconds < {SECONDS_TARGET:g}  got {seconds:.3f}  {verdict}")


def progress(text: str) -> None:
    """A progress line on stderr, overwritten in place on a terminal."""
    if sys.stderr.isatty():
        print(f"\r{text}\033[K", end="", file=sys.stderr, flush=True)


def options() -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, help=f"events in the history (default {EVENTS:,})")
    parser.add_argument("--file-rows", type=int, default=FILE_ROWS, help="events per file")
    parser.add_argument("--quick", action="store_true", help=f"{EVENTS // QUICK:,} events")
    parser.add_argument("--encrypted", action="store_true", help="an encrypted repository")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side (median)")
    parser.add_argument("--dir", type=Path, help="where the temporary files go")
    parser.add_argument("--scan-files", type=int, default=SCAN_FILES,
                        help=f"scan part: files (default {SCAN_FILES:,}; 0 skips)")  # fmt: skip
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    args.events = args.events or (EVENTS // QUICK if args.quick else EVENTS)
    if args.quick and args.scan_files == SCAN_FILES:
        args.scan_files //= QUICK
    return args


def main() -> None:
    """Write the history, time each query both ways, print the table and the targets."""
    args = options()
    leave_cleanly_on_sigterm()
    work = scratch_dir("bench-query-", args.dir)
    secret = MasterSecret(key=os.urandom(32), origin="bench key")
    mode = "encrypted (aes-256-gcm)" if args.encrypted else "plain (secrets mode)"
    print(
        f"{mode} repository; {args.events:,} events in history files of {args.file_rows:,}; "
        f"{os.cpu_count()} CPUs; duckdb {duckdb.__version__}",
        flush=True,
    )
    try:
        root = work / "repo"
        Repository.init(root, secret, encrypt_all=args.encrypted)
        p = pools()
        start = time.perf_counter()
        with Repository.open(root, secret) as repo:
            keys = repo.file_keys if repo.encrypted else None
            files = write_history(root, keys, args.events, args.file_rows, p)
        if args.encrypted:  # the baseline reads the same rows, plain
            files = write_history(work / "plain", None, args.events, args.file_rows, p)
        progress("")
        stored = sum((root / HISTORY_DIR / Path(f).name).stat().st_size for f in files)
        print(f"history written in {time.perf_counter() - start:.1f} s: {len(files)} files, "
              f"{stored / 1e6:,.0f} MB")  # fmt: skip
        lo = T0_US + DELETE_DAY * 86_400_000_000
        queries = {n: q.format(lo=lo, hi=lo + 86_400_000_000) for n, q in QUERIES.items()}
        engine, direct = via_engine(root, secret), via_duckdb(files)
        timings = [time_query(n, q, engine, direct, args.repeat) for n, q in queries.items()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(timings)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench process peak RSS {peak:,.0f} MB")
    if args.scan_files:
        scan_part(args)


if __name__ == "__main__":
    main()
