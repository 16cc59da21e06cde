"""MongoDB capture throughput against a bare pymongo reader on the same server, in one run.

Starts an nx-27017 server on 127.0.0.1 and measures, one part after the other:

- *stream, end to end* (the acceptance ratio, target >= 0.8): a writer process performs a
  chatbot workload (~20,000 change events: ``insert_many`` of conversation documents of
  ~300-600 bytes, plus 20% ``update_one``, ``replace_one`` and ``delete_one``) while (a) a
  bare ``coll.watch(full_document="updateLookup")`` reader takes the events (sleeping 5 ms
  whenever ``try_next()`` has none), (b) ``MongoCapture.run`` appends them to an encrypted,
  zstd-compressed journal that fsyncs every append. Rate = events / (first write -> last
  event received, or -> the journal holding every event durably). Each side gets a fresh
  database. The writer is a process, as an application is: a thread would share this
  process's GIL with the reader. When the writer is the bottleneck both sides run at its
  rate, so its rate is shown too.
- *stream, backlog drain* (informational): the same workload written while the stream is
  open (bare) or the capture was initialised by one ``sync()`` (Hindsight), nobody reading;
  then reading every event (bare) against a second ``sync()`` that catches up until the
  stream is dry. This is the cost of capture itself, free of the writer's speed.
- *initial sync* (target >= 0.7): ~50,000 documents; ``find({}, batch_size=1000)``
  iterated (bare) against ``sync()`` into a fresh repository, which opens a change stream
  for the hand-off and then copies every document into the journal durably.

Both sides read with ``document_class=RawBSONDocument``; Hindsight uses the daemon's client
(``hindsight.wiring.mongo_client``) and its default capture settings. Each part runs
``--repeat`` times, alternating which side goes first; a rate is the total over the
repetitions. ``--profile`` adds cProfile output of Hindsight's side. Server data and
repositories live in a temporary directory under ``--workdir``, removed at the end. Exits 1
if a target is missed.

    python bench/mongo_capture.py [--events N] [--docs N] [--repeat N] [--workdir DIR]
                                  [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import multiprocessing
import os
import pstats
import random
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.change_stream import ChangeStream
from pymongo.collection import Collection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import leave_cleanly_on_sigterm
from capture.mongo_events import META_OP
from capture.mongo_state import KnownMongo
from capture.mongodb import MongoCapture, MongoTarget
from hindsight.config import MongoSource
from hindsight.wiring import mongo_client
from journal.events import ChangeEvent, Op, SeqRange
from journal.keys import MasterSecret
from journal.log import SegmentLog
from journal.repository import Repository
from tests.integration.mongo_server import MongoServer

TARGETS = {"stream": 0.8, "initial sync": 0.7}
COLLECTION = "conversations"
DEPLOYMENT = "mongodb"
INSERT_BATCH = 400  # inserts per insert_many; each round adds the single-document writes below
ROUND_MIX = {"update": 60, "replace": 25, "delete": 15}
POLL_S = 0.005  # the bare reader's sleep when try_next() has nothing (nx never blocks)
TIMEOUT_S = 120.0
DOCUMENT_OPS = frozenset({Op.INSERT, Op.UPDATE, Op.REPLACE, Op.DELETE})
WORDS = ("hola", "precio", "envio", "gracias", "producto", "pedido", "ayuda", "factura", "pago")
T0 = datetime.datetime(2026, 1, 1, 9, 0, 0)

Conn = MongoClient[Any]  # document_class=RawBSONDocument; writes take plain dicts
Coll = Collection[Any]


# --- shared by every measurement ----------------------------------------------------------------


class Profiles:
    """cProfile of Hindsight's side, per part, when ``--profile`` is given; else no-ops."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.parts: dict[str, list[cProfile.Profile]] = {}

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        """Profile the block (in the calling thread) as part of ``part``."""
        if not self.enabled:
            yield
            return
        prof = cProfile.Profile()
        prof.enable()
        try:
            yield
        finally:
            prof.disable()
            self.parts.setdefault(part, []).append(prof)

    def print(self, top: int = 25) -> None:
        """The functions with the most own time, per part."""
        for part, profs in self.parts.items():
            print(f"\n--- profile of Hindsight's side: {part} (own time; runs slowed by profiling)")
            pstats.Stats(*profs, stream=sys.stdout).sort_stats("tottime").print_stats(top)


class Env(NamedTuple):
    """What every measurement shares: the work directory, the server, the key, the profiler."""

    base: Path
    uri: str
    secret: MasterSecret
    client: Conn
    profile: Profiles


# --- the workload ------------------------------------------------------------------------------


class Write(NamedTuple):
    """One write call: ``insert`` (many documents), ``update``, ``replace`` or ``delete``."""

    kind: str
    target: Any  # a list of documents for ``insert``, else the ``_id`` written to
    body: dict[str, Any] | None = None


def message(rng: random.Random, role: str, minute: int) -> dict[str, Any]:
    """One chat message with a timestamp."""
    text = " ".join(rng.choice(WORDS) + str(rng.randint(0, 99)) for _ in range(rng.randint(2, 6)))
    return {"role": role, "text": text, "at": T0 + datetime.timedelta(minutes=minute)}


def conversation(i: int, rng: random.Random) -> dict[str, Any]:
    """A chatbot conversation document of ~300-600 bytes of BSON."""
    turns = rng.randint(1, 2)
    messages = [message(rng, role, i + t) for t in range(turns) for role in ("user", "assistant")]
    return {
        "_id": ObjectId(f"{i:024x}"),
        "session_id": f"s-{rng.getrandbits(48):012x}",
        "user": {"id": f"u{rng.randint(1, 50_000)}", "channel": rng.choice(["whatsapp", "web"])},
        "messages": messages,
        "status": "open",
        "metadata": {"lang": "es", "model": "small-1", "tokens": rng.randint(50, 900)},
        "created_at": T0 + datetime.timedelta(minutes=i),
    }


def workload(events: int, seed: int = 11) -> tuple[list[Write], int]:
    """Writes that make ``events`` change events (at least; whole rounds); and their count."""
    rng = random.Random(seed)
    writes: list[Write] = []
    live: list[ObjectId] = []
    made = next_id = 0
    while made < events:
        docs = [conversation(next_id + k, rng) for k in range(INSERT_BATCH)]
        next_id += INSERT_BATCH
        live.extend(d["_id"] for d in docs)
        writes.append(Write("insert", docs))
        made += len(docs)
        singles = [kind for kind, n in ROUND_MIX.items() for _ in range(n)]
        rng.shuffle(singles)
        for kind in singles:
            writes.append(single_write(kind, live, rng))
        made += len(singles)
    return writes, made


def single_write(kind: str, live: list[ObjectId], rng: random.Random) -> Write:
    """An update (a new message pair), a replace (archived) or a delete of a live document."""
    if kind == "delete":
        return Write("delete", live.pop(rng.randrange(len(live))))
    doc_id = rng.choice(live)
    minute = rng.randint(0, 10_000)
    if kind == "update":
        # not $push: nx-27017 turns the existing elements of the array into JSON strings
        pair = [message(rng, "user", minute), message(rng, "assistant", minute + 1)]
        return Write("update", doc_id, {"$set": {"messages": pair}, "$inc": {"turns": 1}})
    summary = " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40)))
    return Write("replace", doc_id, {"status": "archived", "summary": summary, "turns": 0})


def perform(coll: Coll, writes: Sequence[Write]) -> None:
    """Perform every write in order, as an application would."""
    for w in writes:
        if w.kind == "insert":
            coll.insert_many(w.target, ordered=True)
        elif w.kind == "update":
            coll.update_one({"_id": w.target}, w.body)  # type: ignore[arg-type]
        elif w.kind == "replace":
            coll.replace_one({"_id": w.target}, w.body)  # type: ignore[arg-type]
        else:
            coll.delete_one({"_id": w.target})


class Writer:
    """Performs the workload in a child process, as an application would (a thread would
    share this process's GIL with the reader and slow both).

    The child builds the workload and connects first; ``start`` lets it go. ``started`` and
    ``ended`` are its ``time.monotonic()`` readings, which are system-wide on Linux.
    """

    def __init__(self, uri: str, db: str, events: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=write_workload, args=(uri, db, events, child), name="bench-writer"
        )
        self.proc.start()
        child.close()
        self.started = self.ended = 0.0
        try:
            self._receive(TIMEOUT_S)  # "ready"
        except BaseException:
            self.close()
            raise

    def start(self) -> Writer:
        """Let the writer go."""
        self.conn.send("go")
        return self

    def check(self) -> None:
        """Raise if the writer failed (or died); note its times if it is done."""
        if not self.ended and self.conn.poll():
            self._receive(0)

    def join(self) -> float:
        """Wait for the end of the workload; seconds it took."""
        if not self.ended:
            self._receive(TIMEOUT_S)
        self.proc.join(TIMEOUT_S)
        return self.ended - self.started

    def close(self) -> None:
        """Stop the child if it is still running."""
        if self.proc.is_alive():
            self.proc.terminate()
        self.proc.join(TIMEOUT_S)
        self.conn.close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _receive(self, timeout: float) -> tuple[Any, ...]:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"no word from the workload writer within {timeout:.0f} s")
        try:
            message: tuple[Any, ...] = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"the workload writer died (exit {self.proc.exitcode})") from None
        if message[0] == "error":
            raise RuntimeError(f"the workload writer failed: {message[1]}")
        if message[0] == "done":
            self.started, self.ended = message[1], message[2]
        return message


def write_workload(uri: str, db: str, events: int, conn: Connection) -> None:
    """The writer process: build the workload, connect, wait for "go", write, report."""
    try:
        writes, _ = workload(events)
        client: Conn = MongoClient(uri, serverSelectionTimeoutMS=5000)
        with client:
            coll = client[db][COLLECTION]
            coll.find_one({})  # connected before the clock starts
            conn.send(("ready",))
            conn.recv()
            started = time.monotonic()
            perform(coll, writes)
            conn.send(("done", started, time.monotonic()))
    except Exception as exc:
        conn.send(("error", repr(exc)))


def fresh_collection(client: Conn, db: str) -> Coll:
    """An empty, existing collection in a new database (capture only watches existing ones)."""
    client.drop_database(db)
    client[db].create_collection(COLLECTION)
    return client[db][COLLECTION]


# --- Hindsight's side --------------------------------------------------------------------------


class CountingSink:
    """The journal as capture's sink; notes when the expected change events are durable.

    A change event is a document event from the stream (an initial sync copy is not one).
    ``append`` returns after the journal's fsync, so the moment is the durable one.
    """

    def __init__(self, log: SegmentLog) -> None:
        self.log = log
        self.count = 0
        self.expect = 0
        self.done_at = 0.0
        self.done = threading.Event()

    def arm(self, expect: int) -> None:
        """Start counting towards ``expect`` change events."""
        self.count, self.expect, self.done_at = 0, expect, 0.0
        self.done.clear()

    def append(self, events: Sequence[ChangeEvent]) -> SeqRange:
        """Append durably, then count."""
        seqs = self.log.append(events)
        self.count += sum(1 for e in events if is_change(e))
        if self.expect and self.count >= self.expect and not self.done.is_set():
            self.done_at = time.monotonic()
            self.done.set()
        return seqs


def is_change(event: ChangeEvent) -> bool:
    """Whether ``event`` is a document change from the stream (not a copy or a marker)."""
    return event.op in DOCUMENT_OPS and (event.meta or {}).get(META_OP) != "sync"


class Hindsight:
    """A fresh encrypted repository and a capture of one database, for one measurement."""

    def __init__(self, env: Env, db: str) -> None:
        path = Path(tempfile.mkdtemp(prefix="repo-", dir=env.base)) / "repo"
        Repository.init(path, env.secret)
        self.repo = Repository.open(path, env.secret, writable=True)
        self.sink = CountingSink(self.repo.log)
        source = MongoSource(env.uri, DEPLOYMENT, (db,), (COLLECTION,), "updateLookup")
        self.client: Conn = mongo_client(source)  # the daemon's client: RawBSONDocument
        self.client.admin.command("ping")  # connected before any clock starts, as the bare side
        target = MongoTarget(DEPLOYMENT, (db,), (COLLECTION,))
        state = KnownMongo().deployment(DEPLOYMENT)
        self.capture = MongoCapture(target, self.client, self.sink, state)
        self.profile = env.profile

    def __enter__(self) -> Hindsight:
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the client and the repository (the directory goes with the bench's)."""
        self.client.close()
        self.repo.close()


@contextmanager
def running(hs: Hindsight) -> Iterator[None]:
    """``capture.run`` in a thread, until the block ends; waits until it is streaming."""
    stop, errors = threading.Event(), []

    def run() -> None:
        try:
            with hs.profile("stream"):
                hs.capture.run(stop)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, name="capture", daemon=True)
    thread.start()
    try:
        wait_for(lambda: hs.capture.status.state == "streaming" or not thread.is_alive())
        if errors or not thread.is_alive():
            raise RuntimeError(f"capture stopped before streaming: {errors!r}")
        yield
    finally:
        stop.set()
        thread.join(TIMEOUT_S)
    if errors:
        raise RuntimeError(f"capture failed: {errors[0]!r}") from errors[0]


def wait_for(ready: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    """Poll ``ready`` every 5 ms until it is true; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not ready within {timeout:.0f} s")
        time.sleep(POLL_S)


# --- the measurements --------------------------------------------------------------------------


class Run(NamedTuple):
    """One timed measurement: items moved and seconds; ``writer_s`` when a writer ran."""

    items: int
    seconds: float
    writer_s: float = 0.0


def read_stream(stream: ChangeStream[Any], n: int, writer: Writer | None = None) -> float:
    """Take ``n`` events from ``stream``; the moment the last one arrived."""
    got, deadline = 0, time.monotonic() + TIMEOUT_S
    while got < n:
        if stream.try_next() is not None:
            got += 1
            continue
        if writer is not None:
            writer.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"bare reader got {got:,} of {n:,} events")
        time.sleep(POLL_S)
    return time.monotonic()


def bare_stream(env: Env, db: str, events: int, n: int) -> Run:
    """End to end: a bare reader follows the writer until it has every event."""
    coll = fresh_collection(env.client, db)
    with coll.watch(full_document="updateLookup") as stream, Writer(env.uri, db, events) as w:
        last = read_stream(stream, n, w.start())
        writer_s = w.join()
        return Run(n, last - w.started, writer_s)


def hindsight_stream(env: Env, db: str, events: int, n: int) -> Run:
    """End to end: ``capture.run`` follows the writer until the journal holds every event."""
    fresh_collection(env.client, db)
    with (
        Hindsight(env, db) as hs,
        Writer(env.uri, db, events) as writer,
        running(hs),
    ):
        hs.sink.arm(n)
        writer_s = writer.start().join()
        if not hs.sink.done.wait(TIMEOUT_S):
            raise TimeoutError(f"the journal got {hs.sink.count:,} of {n:,} events")
        run = Run(n, hs.sink.done_at - writer.started, writer_s)
    check_count(hs, n)
    return run


def bare_backlog(client: Conn, db: str, writes: Sequence[Write], n: int) -> Run:
    """Backlog: write everything with the stream open, then time reading it all."""
    coll = fresh_collection(client, db)
    with coll.watch(full_document="updateLookup") as stream:
        writer_s = timed(lambda: perform(coll, writes))
        start = time.monotonic()
        return Run(n, read_stream(stream, n) - start, writer_s)


def hindsight_backlog(env: Env, db: str, writes: Sequence[Write], n: int) -> Run:
    """Backlog: ``sync()`` once to register, write everything, time a second ``sync()``."""
    coll = fresh_collection(env.client, db)
    with Hindsight(env, db) as hs:
        hs.capture.sync()
        writer_s = timed(lambda: perform(coll, writes))
        hs.sink.arm(n)
        with env.profile("stream"):
            seconds = timed(hs.capture.sync)
        check_count(hs, n)
        return Run(n, seconds, writer_s)


def check_count(hs: Hindsight, n: int) -> None:
    """Every change event reached the journal exactly once."""
    if hs.sink.count != n:
        raise RuntimeError(f"the journal holds {hs.sink.count:,} change events, expected {n:,}")


def bare_find(coll: Coll, m: int) -> Run:
    """Initial sync baseline: iterate every document."""
    start = time.monotonic()
    n = sum(1 for _ in coll.find({}, batch_size=1000))
    seconds = time.monotonic() - start
    assert n == m, f"find() returned {n:,} documents, expected {m:,}"
    return Run(n, seconds)


def hindsight_sync(env: Env, db: str, m: int) -> Run:
    """Initial sync: a fresh repository and state, one ``sync()``."""
    with Hindsight(env, db) as hs, env.profile("initial sync"):
        start = time.monotonic()
        summary = hs.capture.sync()
        seconds = time.monotonic() - start
    assert summary.documents_copied == m, f"copied {summary.documents_copied:,} of {m:,}"
    return Run(m, seconds)


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` took."""
    start = time.monotonic()
    fn()
    return time.monotonic() - start


Results = dict[str, list[Run]]


def alternate(r: int, bare: Callable[[], Run], hs: Callable[[], Run]) -> tuple[Run, Run]:
    """Both sides of repetition ``r``, bare first when ``r`` is even; (bare, hindsight)."""
    if r % 2:
        hs_run = hs()
        return bare(), hs_run
    bare_run = bare()
    return bare_run, hs()


def measure_stream(env: Env, events: int, repeat: int) -> Results:
    """End-to-end and backlog runs of both sides, ``repeat`` times each."""
    writes, n = workload(events)
    out: Results = {k: [] for k in ("e2e bare", "e2e hindsight", "log bare", "log hindsight")}
    for r in range(repeat):
        bare, hs = alternate(
            r,
            partial(bare_stream, env, f"chatbot_bare_e2e{r}", events, n),
            partial(hindsight_stream, env, f"chatbot_hs_e2e{r}", events, n),
        )
        out["e2e bare"].append(bare)
        out["e2e hindsight"].append(hs)
        bare, hs = alternate(
            r,
            partial(bare_backlog, env.client, f"chatbot_bare_log{r}", writes, n),
            partial(hindsight_backlog, env, f"chatbot_hs_log{r}", writes, n),
        )
        out["log bare"].append(bare)
        out["log hindsight"].append(hs)
    return out


def measure_sync(env: Env, m: int, repeat: int) -> Results:
    """Initial sync of ``m`` documents by both sides, ``repeat`` times each."""
    db = "chatbot_sync"
    coll = fresh_collection(env.client, db)
    rng = random.Random(5)
    for start in range(0, m, 1000):
        coll.insert_many([conversation(i, rng) for i in range(start, min(m, start + 1000))])
    out: Results = {"sync bare": [], "sync hindsight": []}
    for r in range(repeat):
        bare, hs = alternate(r, partial(bare_find, coll, m), partial(hindsight_sync, env, db, m))
        out["sync bare"].append(bare)
        out["sync hindsight"].append(hs)
    return out


# --- the report --------------------------------------------------------------------------------


def rate(runs: Sequence[Run]) -> float:
    """Items per second over all runs."""
    return sum(r.items for r in runs) / sum(r.seconds for r in runs)


def writer_rate(runs: Sequence[Run]) -> float:
    """The writer's events per second over all runs."""
    return sum(r.items for r in runs) / sum(r.writer_s for r in runs)


def line(label: str, runs: Sequence[Run], unit: str) -> str:
    """``label  rate unit  (each run's rate)``."""
    each = "  ".join(f"{r.items / r.seconds:,.0f}" for r in runs)
    return f"{label:22s} {rate(runs):>9,.0f} {unit}  (runs: {each})"


def writer_line(runs: Sequence[Run], during: str) -> str:
    """The writer's rate during the runs; with ``during``, how far the reader trailed it."""
    text = f"{'  writer':22s} {writer_rate(runs):>9,.0f} events/s  {during}"
    if during.startswith("while"):
        lag = sum(r.seconds - r.writer_s for r in runs) / len(runs)
        text += f"; last event in {lag:.3f} s after the last write"
    return text


def verdict(name: str, value: float, target: float | None) -> str:
    """``ratio NAME 0.95  target >= 0.8  PASS`` (or informational without a target)."""
    if target is None:
        return f"ratio {name:28s} {value:.2f}  (informational, no target)"
    word = "PASS" if value >= target else "FAIL"
    return f"ratio {name:28s} {value:.2f}  target >= {target}  {word}"


def report(res: Results) -> bool:
    """Print rates and ratios; whether every target was met."""
    e2e = rate(res["e2e hindsight"]) / rate(res["e2e bare"])
    log = rate(res["log hindsight"]) / rate(res["log bare"])
    sync = rate(res["sync hindsight"]) / rate(res["sync bare"])
    print("stream, end to end (first write -> last event received / durable in the journal):")
    print(line("stream bare", res["e2e bare"], "events/s"))
    print(writer_line(res["e2e bare"], "while the bare reader ran"))
    print(line("stream hindsight", res["e2e hindsight"], "events/s"))
    print(writer_line(res["e2e hindsight"], "while capture ran"))
    print("stream, backlog drain (all events written first, then read / caught up by sync()):")
    print(line("backlog bare", res["log bare"], "events/s"))
    print(line("backlog hindsight", res["log hindsight"], "events/s"))
    print(writer_line(res["log bare"] + res["log hindsight"], "alone (nothing reading)"))
    print("initial sync (bare: find() iteration; hindsight: sync() into a fresh journal):")
    print(line("initial sync bare", res["sync bare"], "docs/s"))
    print(line("initial sync hindsight", res["sync hindsight"], "docs/s"))
    print(verdict("stream hindsight/bare", e2e, TARGETS["stream"]) + "  (acceptance ratio)")
    print(verdict("backlog hindsight/bare", log, None))
    print(verdict("initial sync hindsight/bare", sync, TARGETS["initial sync"]))
    return e2e >= TARGETS["stream"] and sync >= TARGETS["initial sync"]


def describe(writes: Sequence[Write], n: int, m: int, repeat: int) -> str:
    """One line on the workload."""
    kinds = {k: 0 for k in ("insert", "update", "replace", "delete")}
    for w in writes:
        kinds[w.kind] += len(w.target) if w.kind == "insert" else 1
    mix = ", ".join(f"{v:,} {k}s" for k, v in kinds.items())
    return (
        f"nx-27017 {version('nx-27017')} on 127.0.0.1, {os.cpu_count()} CPUs; workload {n:,} "
        f"change events ({mix}); initial sync {m:,} documents; each side x{repeat}"
    )


def main() -> None:
    """Start the server, measure both parts, print; everything is removed afterwards."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="change events per stream run")
    parser.add_argument("--docs", type=int, default=50_000, help="documents for initial sync")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each side")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="default: current dir")
    parser.add_argument("--profile", action="store_true", help="cProfile Hindsight's side")
    args = parser.parse_args()
    leave_cleanly_on_sigterm()  # so the cleanup below runs
    writes, n = workload(args.events)
    print(describe(writes, n, args.docs, args.repeat))
    secret = MasterSecret(key=os.urandom(32), origin="bench key")
    profile = Profiles(args.profile)
    args.workdir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="mongo_capture-", dir=args.workdir))
    try:
        with MongoServer(base / "mongo") as server:
            client: Conn = server.client(document_class=RawBSONDocument)
            with client:
                env = Env(base, server.uri, secret, client, profile)
                results = measure_stream(env, args.events, args.repeat)
                results.update(measure_sync(env, args.docs, args.repeat))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    passed = report(results)
    profile.print()
    if not passed:
        sys.exit(1)


if __name__ == "__main__":
    main()
