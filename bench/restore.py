"""Point-in-time restore against a plain load of the same data: documents and files, one run.

*Documents*: a repository holds 100,000 conversation documents (``tests/journal/eventgen.py``,
appended 10,000 at a time), a snapshot of them, then 1,000,000 more events with no snapshot
after them: 90% UPDATE or REPLACE with a new full image of a random live document, 5%
inserts of new documents, 5% deletes. ``chatbot.conversations`` is restored as of the
journal's end into an empty collection of an nx-27017 server the way ``RecoveryService``
does it: the moment to a seq (``restore.moment.cut_at``), the state there
(``compaction.state_at``; also the state at the journal's end, as the cut is that end),
``plan_documents`` (not in place), then ``apply_documents``. The baseline is
``insert_many`` of the same final documents (exact BSON) into another empty collection on
the same server.

*Files*: a chatbot tree (``hindsight.demo.make_tree``, 20,000 files, 1 GiB) is captured
with ``FileCapture`` and snapshotted, then restored as of the journal's end into an empty
directory (``cut_at``, ``state_at``, ``plan_files``, ``apply_files``). The baseline is
``shutil.copytree`` of the live tree into an empty directory. The tree is read once before
either, so both start from a warm page cache; what capture wrote is synced first, and the
copy's dirty pages are synced (timed apart) before the restore, whose own ``os.sync`` would
otherwise pay for them. The restore writes durably (one sync, renames, directory fsyncs),
the copy does not: the restore's ``os.sync`` is shown on a line of its own. An untimed copy
comes first, and no copy or restored tree is deleted before the end: on a virtual machine,
writes soon after a big delete were seen to run several times slower (probably as the
freed memory goes back to the host), which made single runs of either side swing by 4x.

Each restore is checked before its figures count: every document byte-identical to the
final documents, every file's size, mode and SHA-256 (or link target) identical to the live
tree. Each side runs ``--repeat`` times (default 3), alternating, each time into an empty
collection or directory; the median run counts and its steps are shown. Each step shows the
CPU this process and the server used while it ran, so a step bound by nx-27017 shows.
Targets are reported, not asserted: the exit code is 0 unless something failed (a wrong
restore is a failure). ``--profile`` adds cProfile listings (all threads summed) of one more,
untimed restore of each kind. Everything lives in a temporary directory (``--dir``, default
the system's), removed at the end.

    python bench/restore.py [--docs N] [--events N] [--files N] [--bytes N] [--quick]
                            [--only documents|files] [--encrypted] [--repeat N] [--dir DIR]
                            [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import os
import pstats
import random
import resource
import shutil
import stat
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

from bson.raw_bson import RawBSONDocument

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import leave_cleanly_on_sigterm, progress, scratch_dir
from capture.filesystem import FileCapture
from capture.mongo_events import canonical_key
from capture.paths import FileRoot
from capture.state import KnownFiles
from compaction.snapshots import snapshots_of
from compaction.state_at import StateAt, state_at
from hindsight.demo import make_tree
from journal.events import ChangeEvent, Op, Source, now_us
from journal.keys import MasterSecret
from journal.meta import META_DEPLOYMENT
from journal.repository import Repository
from restore.documents import apply_documents, plan_documents
from restore.files import Strategy, apply_files, plan_files
from restore.moment import cut_at
from tests.integration.mongo_server import MongoServer
from tests.journal.eventgen import conversation

DEFAULTS = {"docs": 100_000, "events": 1_000_000, "files": 20_000, "bytes": 2**30}
QUICK = {"docs": 10_000, "events": 100_000, "files": 2_000, "bytes": 100 * 2**20}
TARGET = 2.0  # restore seconds / baseline seconds, at most
MIX = ((Op.UPDATE, 0.45), (Op.REPLACE, 0.45), (Op.INSERT, 0.05), (Op.DELETE, 0.05))
BATCH = 10_000  # events per append, and per generated chunk
SOURCE_NS, RESTORED_NS, BASELINE_NS = "chatbot.conversations", "restored.conv", "baseline.conv"
PROFILED_NS = "profiled.conv"
DEPLOYMENT, ROOT = "mongodb", "app"
META = {META_DEPLOYMENT: DEPLOYMENT}
T0_US = 1_764_000_000_000_000
SERVER_VERDICTS = (  # the share of a CPU the server used while a step ran: what it means
    (0.8, "bound by the server"),
    (0.5, "mostly the server"),
    (0.0, "not bound by the server"),
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PREFIXES = [sysconfig.get_paths()[k] + "/" for k in ("purelib", "stdlib")]
PREFIXES.append(str(Path(__file__).resolve().parent.parent) + "/")


class WrongRestore(Exception):
    """A restore finished but did not give back the data it should have."""


# --- measuring ------------------------------------------------------------------------------------


class Step(NamedTuple):
    """One timed step: wall seconds, and CPU seconds this process and the server used."""

    seconds: float
    bench_cpu: float
    server_cpu: float | None


Steps = dict[str, Step]  # a run's steps by name, in order


class Clock:
    """Times steps into a dict, with this process's (and its ended children's) and the
    server's CPU time."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.server_pid = server_pid

    def server_cpu(self) -> float | None:
        """CPU seconds the server process has used so far (None: no server, or gone)."""
        if self.server_pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime

    @contextmanager
    def step(self, steps: Steps, name: str) -> Iterator[None]:
        """Time the block as ``steps[name]``."""
        server, cpu, start = self.server_cpu(), own_cpu(), time.perf_counter()
        yield
        seconds, cpu = time.perf_counter() - start, own_cpu() - cpu
        after = self.server_cpu()
        used = after - server if after is not None and server is not None else None
        steps[name] = Step(seconds, cpu, used)


def own_cpu() -> float:
    """CPU seconds of this process and of its children that have ended (the restore's
    worker processes; not the server, which runs on)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


@contextmanager
def timed_sync(steps: Steps, name: str) -> Iterator[None]:
    """Time every ``os.sync()`` made in the block as ``name``: ``apply_files`` makes one at
    the end, and some in the background while it stages (their time overlaps staging)."""
    real, spent = os.sync, [0.0]

    def sync() -> None:
        start = time.perf_counter()
        real()
        spent[0] += time.perf_counter() - start

    os.sync = sync
    try:
        yield
    finally:
        os.sync = real
        steps[name] = Step(spent[0], 0.0, None)


@contextmanager
def profiled(profiles: list[cProfile.Profile]) -> Iterator[None]:
    """Profile the block, and every thread started in it (``apply_files`` writes from a
    pool), into ``profiles``: this thread's first, then one per thread."""

    def start_in_thread(*_: object) -> None:
        profiles.append(thread := cProfile.Profile())
        thread.enable()  # replaces this hook in the new thread

    profiles.append(main := cProfile.Profile())
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        yield
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]


def restore_seconds(steps: Steps) -> float:
    """A restore's wall time: its top-level steps (a name starting with spaces is inside the
    step before it)."""
    return sum(s.seconds for name, s in steps.items() if not name.startswith(" "))


def baseline_seconds(steps: Steps) -> float:
    """A baseline's wall time: its first step (the others are shown, not counted)."""
    return next(iter(steps.values())).seconds


def median_run(runs: list[Steps], seconds: Callable[[Steps], float]) -> Steps:
    """The run whose time is the median (the upper middle one of an even count)."""
    return sorted(runs, key=seconds)[len(runs) // 2]


class Part(NamedTuple):
    """One kind of restore measured: every run of it and of its baseline, what was checked."""

    name: str  # "documents" or "files"
    title: str
    unit: str  # "docs" or "files"
    items: int
    nbytes: int
    restores: list[Steps]  # each run's steps, in order
    baselines: list[Steps]
    checked: str
    notes: list[str]

    @property
    def steps(self) -> Steps:
        """The steps of the median restore."""
        return median_run(self.restores, restore_seconds)

    @property
    def baseline(self) -> Steps:
        """The steps of the median baseline."""
        return median_run(self.baselines, baseline_seconds)

    @property
    def restore_seconds(self) -> float:
        """The median restore's wall time."""
        return restore_seconds(self.steps)

    @property
    def baseline_seconds(self) -> float:
        """The median baseline's wall time."""
        return baseline_seconds(self.baseline)

    @property
    def ratio(self) -> float:
        """Median restore time over median baseline time."""
        return self.restore_seconds / self.baseline_seconds

    def spread(self) -> str:
        """Each side's fastest and slowest run."""
        r = sorted(restore_seconds(s) for s in self.restores)
        b = sorted(baseline_seconds(s) for s in self.baselines)
        return f"runs {len(r)}: restore {r[0]:.2f}-{r[-1]:.2f} s, baseline {b[0]:.2f}-{b[-1]:.2f} s"


def open_repo(root: Path, secret: MasterSecret, *, writable: bool = False) -> Repository:
    """The bench repository at ``root``."""
    return Repository.open(root, secret, writable=writable)


def locate(repo: Repository, clock: Clock, steps: Steps) -> tuple[StateAt, StateAt]:
    """The state at the journal's end, found as ``RecoveryService.plan`` finds it: the moment
    (now) to a seq, the state there, and the state at the journal's end as ``head``, which
    is the same state when the cut is the journal's end (then no second fold); (at, head)."""
    snaps, log = snapshots_of(repo), repo.log
    with clock.step(steps, "cut_at: the moment (now) to a seq"):
        cut = cut_at(snaps, log, now_us(), "now")
    end = log.next_seq - 1
    name = "the cut, also head: fold" if cut == end else "the cut: fold the events"
    with clock.step(steps, f"state_at {name} on the snapshot"):
        at = state_at(snaps, log, cut)
    if cut == end:
        return at, at
    with clock.step(steps, "state_at the journal's end (head): fold again"):
        head = state_at(snaps, log, end)
    return at, head


# --- documents ------------------------------------------------------------------------------------


def key_of(i: int) -> str:
    """The journal key of document ``i``: its ``_id`` as canonical extended JSON."""
    return canonical_key(f"conv-{i:08d}")


class Collection:
    """The documents the journal says exist: the ground truth a restore must give back."""

    def __init__(self) -> None:
        self.docs: dict[int, bytes] = {}  # document number -> BSON
        self.live: list[int] = []  # the same numbers, to pick one at random
        self.where: dict[int, int] = {}  # number -> its index in ``live``
        self.made = 0  # events made
        self.next_id = 0  # the number the next insert gets

    def event(self, op: Op, rng: random.Random) -> ChangeEvent:
        """The next event, ``op`` on a random live document (a new one for an insert)."""
        if op is Op.INSERT or not self.live:
            op, i, self.next_id = Op.INSERT, self.next_id, self.next_id + 1
            self.where[i] = len(self.live)
            self.live.append(i)
        else:
            i = self.live[rng.randrange(len(self.live))]
        after = None if op is Op.DELETE else conversation(i, rng).after
        if after is None:
            self.remove(i)
        else:
            self.docs[i] = after  # type: ignore[assignment]
        n, self.made = self.made, self.made + 1
        ts, where = T0_US + n * 1000, f"resume-{n}".encode()
        return ChangeEvent(Source.MONGODB, SOURCE_NS, key_of(i), op, ts, after, where, meta=META)

    def remove(self, i: int) -> None:
        """Forget document ``i`` (swap-remove from ``live``)."""
        at, last = self.where.pop(i), self.live.pop()
        if last != i:
            self.live[at], self.where[last] = last, at
        del self.docs[i]

    def final(self) -> dict[str, bytes]:
        """Journal key -> BSON of every live document."""
        return {key_of(i): body for i, body in self.docs.items()}


def pick(rng: random.Random) -> Op:
    """An operation drawn from ``MIX``."""
    r = rng.random()
    for op, share in MIX:
        if r < share:
            return op
        r -= share
    return MIX[-1][0]


def batches(
    coll: Collection, n: int, rng: random.Random, inserts: bool
) -> Iterator[list[ChangeEvent]]:
    """``n`` events, ``BATCH`` at a time: all inserts, or drawn from ``MIX``."""
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        yield [coll.event(Op.INSERT if inserts else pick(rng), rng) for _ in range(count)]


def build_documents(
    root: Path, secret: MasterSecret, encrypted: bool, docs: int, events: int
) -> Collection:
    """The repository: ``docs`` inserts, a snapshot, ``events`` more; the final documents."""
    coll, rng = Collection(), random.Random(7)
    Repository.init(root, secret, encrypt_all=encrypted)
    with open_repo(root, secret, writable=True) as repo:
        progress(f"documents: appending {docs:,} inserts, then a snapshot")
        for batch in batches(coll, docs, rng, inserts=True):
            repo.log.append(batch)
        snapshots_of(repo).take(repo.log)
        progress(f"documents: appending {events:,} events after the snapshot")
        start = time.perf_counter()
        for n, batch in enumerate(batches(coll, events, rng, inserts=False), 1):
            repo.log.append(batch)
            if n % 20 == 0:
                rate = n * BATCH / (time.perf_counter() - start)
                progress(f"  {n * BATCH:,} events ({rate:,.0f}/s)")
    return coll


def restore_documents(repo: Repository, client: Any, target: str, clock: Clock) -> Steps:
    """Restore the collection at the journal's end into ``target``; the steps timed."""
    steps: Steps = {}
    at, head = locate(repo, clock, steps)
    with clock.step(steps, "plan_documents: merge rows, compare with the target"):
        plan = plan_documents(
            at, head, client, DEPLOYMENT, {SOURCE_NS: target}, in_place=False, metadata={}
        )
    with clock.step(steps, "apply_documents: unordered bulk writes"):
        results = apply_documents(plan, client, Strategy.OVERWRITE)
    if results.failed:
        some = list(results.failed.items())[:3]
        raise WrongRestore(f"{len(results.failed)} documents failed to restore, e.g. {some}")
    return steps


def check_documents(client: Any, namespace: str, final: dict[str, bytes]) -> int:
    """Every document of ``namespace`` is one of ``final``, byte for byte, and none is
    missing; the count. WrongRestore otherwise."""
    db, _, name = namespace.partition(".")
    seen, wrong = 0, []
    for doc in client[db][name].find():
        seen += 1
        if final.get(canonical_key(doc["_id"])) != bytes(doc.raw):
            wrong.append(doc["_id"])
    if wrong or seen != len(final):
        raise WrongRestore(
            f"{namespace}: {seen:,} documents, {len(final):,} expected; {len(wrong):,} differ "
            f"from the final documents (e.g. {wrong[:3]})"
        )
    return seen


def documents_part(args: argparse.Namespace, work: Path, secret: MasterSecret) -> Part:
    """Build the repository, start nx-27017, time the baseline and the restore, check both."""
    root = work / "repo-documents"
    coll = build_documents(root, secret, args.encrypted, args.docs, args.events)
    final = coll.final()
    nbytes = sum(map(len, final.values()))
    del coll
    restores: list[Steps] = []
    baselines: list[Steps] = []
    with MongoServer(work / "mongo") as server:
        client: Any = server.client(document_class=RawBSONDocument)
        with client, open_repo(root, secret) as repo:
            clock = Clock(server_pid(server))
            client.admin.command("ping")
            for run in range(1, args.repeat + 1):
                progress(f"documents, run {run}: baseline, insert_many of {len(final):,}")
                baselines.append(insert_baseline(client, final, clock))
                progress(f"documents, run {run}: restore")
                restores.append(restore_documents(repo, client, RESTORED_NS, clock))
                progress(f"documents, run {run}: checking")
                count = check_documents(client, RESTORED_NS, final)
                check_documents(client, BASELINE_NS, final)
                for namespace in (RESTORED_NS, BASELINE_NS):  # the next run starts empty
                    db, _, name = namespace.partition(".")
                    client[db].drop_collection(name)
            if args.profile:
                progress("documents: profiled restore (not timed)")
                with profiled(args.profiles.setdefault("documents", [])):
                    restore_documents(repo, client, PROFILED_NS, clock)
    checked = (
        f"check documents: {count:,} restored, every one byte-identical to the final "
        f"documents (the baseline's {count:,} too)"
    )
    title = (
        f"documents: {SOURCE_NS} at the journal's end ({args.docs:,} inserts, snapshot, "
        f"{args.events:,} events) into an empty collection"
    )
    part = Part("documents", title, "docs", count, nbytes, restores, baselines, checked, [])
    part.notes.extend(server_cpu_note(part.baseline, part.steps))
    return part


def insert_baseline(client: Any, final: dict[str, bytes], clock: Clock) -> Steps:
    """Time ``insert_many`` of the final documents into an empty collection."""
    steps: Steps = {}
    docs = [RawBSONDocument(final[k]) for k in sorted(final)]
    db, _, name = BASELINE_NS.partition(".")
    with clock.step(steps, "insert_many of the final documents"):
        client[db][name].insert_many(docs)
    return steps


def server_pid(server: MongoServer) -> int | None:
    """The nx-27017 process id, from its pid file."""
    try:
        return int(server.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def server_cpu_note(baseline: Steps, steps: Steps) -> list[str]:
    """Lines saying which MongoDB writes were bound by the server, and how much of the
    restore never waits on it."""
    notes = []
    for name, s in [*baseline.items(), *((n, s) for n, s in steps.items() if "apply" in n)]:
        if s.server_cpu is None:
            continue
        busy, own = s.server_cpu / s.seconds, s.bench_cpu / s.seconds
        verdict = next(v for bound, v in SERVER_VERDICTS if busy >= bound)
        notes.append(
            f"note: {name.split(':')[0]}: nx-27017 used {busy:.0%} of a CPU, this process "
            f"{own:.0%}: {verdict}"
        )
    alone = sum(s.seconds for n, s in steps.items() if n.startswith(("cut_at", "state_at")))
    total = sum(s.seconds for s in steps.values())
    notes.append(
        f"note: {alone:.2f} s of the restore's {total:.2f} s (cut_at, state_at) run in this "
        "process without the server: a faster MongoDB shrinks the baseline and apply, not them"
    )
    return notes


# --- files ----------------------------------------------------------------------------------------


def manifest(root: Path) -> dict[str, tuple[int, int, str]]:
    """Relative path -> (size, mode, SHA-256 or link target) of every file under ``root``."""
    files = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            files[rel] = (0, 0, "-> " + os.readlink(path))
        elif stat.S_ISREG(st.st_mode):
            with path.open("rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            files[rel] = (st.st_size, stat.S_IMODE(st.st_mode), digest)
    return files


def build_files(args: argparse.Namespace, tree: Path, root: Path, secret: MasterSecret) -> str:
    """Make the tree, capture it into a new repository, take a snapshot; a summary."""
    progress(f"files: making a tree of {args.files:,} files, {args.bytes / 2**20:,.0f} MiB")
    made = make_tree(tree, files=args.files, total_bytes=args.bytes)
    progress("files: capturing it")
    Repository.init(root, secret, encrypt_all=args.encrypted)
    with open_repo(root, secret, writable=True) as repo:
        capture = FileCapture([FileRoot.of(ROOT, tree, ["**"])], repo.log, repo.blobs, KnownFiles())
        start = time.perf_counter()
        summary = capture.scan()
        repo.blobs.flush()
        secs = time.perf_counter() - start
        snapshots_of(repo).take(repo.log)
    if summary.problems:
        raise WrongRestore(f"capture could not read {len(summary.problems)} files")
    return (
        f"tree: {made.files:,} files, {made.bytes / 2**20:,.1f} MiB; captured {summary.new:,} "
        f"files in {secs:.1f} s, then a snapshot"
    )


def restore_files(repo: Repository, target: Path, clock: Clock) -> Steps:
    """Restore the root at the journal's end into ``target``; the steps timed."""
    steps: Steps = {}
    at, head = locate(repo, clock, steps)
    with clock.step(steps, "plan_files: merge rows, stat the target"):
        plan = plan_files(at, head, {ROOT: target}, in_place=False)
    with (
        timed_sync(steps, "  of which os.sync (background ones too)"),
        clock.step(steps, "apply_files: write, sync, rename, fsync"),
    ):
        results = apply_files(
            plan, repo.blobs, Strategy.OVERWRITE, suffix="bench", reopen=repo.reopener()
        )
    if results.failed:
        some = list(results.failed.items())[:3]
        raise WrongRestore(f"{len(results.failed)} files failed to restore, e.g. {some}")
    return steps


def files_part(args: argparse.Namespace, work: Path, secret: MasterSecret) -> Part:
    """Make and capture the tree, time the copy and the restore, check the restore."""
    tree, root = work / "tree", work / "repo-files"
    made = build_files(args, tree, root, secret)
    os.sync()  # what capture wrote: neither the copy nor the restore should pay for it
    progress("files: reading the tree (warms the page cache, and the expected manifest)")
    expected = manifest(tree)
    nbytes = sum(size for size, _, _ in expected.values())
    clock = Clock()
    restores: list[Steps] = []
    baselines: list[Steps] = []
    progress("files: warm-up copy (not timed)")
    copy_baseline(tree, work / "copy-0", clock)
    with open_repo(root, secret) as repo:
        for run in range(1, args.repeat + 1):
            progress(f"files, run {run}: baseline, shutil.copytree")
            baselines.append(copy_baseline(tree, work / f"copy-{run}", clock))
            progress(f"files, run {run}: restore")
            restores.append(restore_files(repo, work / f"restored-{run}", clock))
            progress(f"files, run {run}: checking")
            got = manifest(work / f"restored-{run}")
            bad = sorted(k for k in expected.keys() | got.keys() if expected.get(k) != got.get(k))
            if bad:
                raise WrongRestore(f"restored tree differs in {len(bad)} files, e.g. {bad[:3]}")
        if args.profile:
            progress("files: profiled restore (not timed)")
            with profiled(args.profiles.setdefault("files", [])):
                restore_files(repo, work / "profiled", clock)
    checked = f"check files: {len(got):,} restored, all with size, mode and SHA-256 identical"
    title = f"files: root {ROOT!r} at the journal's end into an empty directory"
    title += f"\n  {made}"
    return Part("files", title, "files", len(got), nbytes, restores, baselines, checked, [])


def copy_baseline(tree: Path, copy: Path, clock: Clock) -> Steps:
    """Time ``shutil.copytree`` of the live tree, then (apart) the sync of what it wrote."""
    steps: Steps = {}
    with clock.step(steps, "shutil.copytree of the live tree"):
        shutil.copytree(tree, copy, symlinks=True)
    with clock.step(steps, "os.sync after the copy (not counted)"):
        os.sync()
    return steps


# --- the report -----------------------------------------------------------------------------------


def step_row(name: str, s: Step, total: float) -> str:
    """One step of a table."""
    share = f"{s.seconds / total:6.0%}" if total else ""
    bench = f"{s.bench_cpu / s.seconds:9.0%}" if s.bench_cpu and s.seconds else f"{'':9s}"
    server = f"{s.server_cpu / s.seconds:10.0%}" if s.server_cpu is not None and s.seconds else ""
    return f"  {name:52s} {s.seconds:9.2f} {share:>6s} {bench} {server}"


def rate_row(label: str, part: Part, seconds: float) -> str:
    """Items per second and MB per second of one side."""
    return (
        f"  {label:9s} {part.items:>10,} {part.unit:5s} {seconds:9.2f} s "
        f"{part.items / seconds:>11,.0f} {part.unit}/s {part.nbytes / 1e6 / seconds:8.1f} MB/s"
    )


def report(part: Part) -> None:
    """The steps of a restore and its baseline, then both rates."""
    total = part.restore_seconds
    print(part.title)
    print(f"  {'step':52s} {'seconds':>9s} {'share':>6s} {'bench CPU':>9s} {'server CPU':>10s}")
    for name, s in part.steps.items():
        print(step_row(name, s, total))
    print(f"  {'restore, all steps':52s} {total:9.2f}")
    for name, s in part.baseline.items():
        print(step_row(f"baseline: {name}", s, 0.0))
    print(rate_row("restore", part, total))
    print(rate_row("baseline", part, part.baseline_seconds))


def verdicts(parts: list[Part]) -> None:
    """The ratio and target line of each part."""
    for p in parts:
        print(
            f"ratio {p.name} restore/baseline {p.ratio:.2f}  (medians: restore "
            f"{p.restore_seconds:.2f} s, baseline {p.baseline_seconds:.2f} s; {p.spread()})"
        )
    for p in parts:
        verdict = "PASS" if p.ratio <= TARGET else "MISS"
        print(f"target {p.name} restore/baseline <= {TARGET}  got {p.ratio:.2f}  {verdict}")


def describe(args: argparse.Namespace) -> str:
    """One line on the machine and the workload."""
    mix = ", ".join(f"{share:.0%} {op.name}" for op, share in MIX)
    return (
        f"{'encrypted' if args.encrypted else 'plain'} repository; nx-27017 "
        f"{version('nx-27017')} on 127.0.0.1; {os.cpu_count()} CPUs (bench, server and "
        f"the restore's threads and worker processes share them); events after the snapshot: {mix}"
    )


def print_profiles(profiles: dict[str, list[cProfile.Profile]], top: int = 30) -> None:
    """Top functions of each profiled restore by own time, all its threads summed."""
    for name, profs in profiles.items():
        text = io.StringIO()
        pstats.Stats(*profs, stream=text).sort_stats("tottime").print_stats(top)
        print(f"--- profile: {name} restore (untimed run, {len(profs)} threads), by tottime")
        lines = text.getvalue().split("\n", 4)[-1].rstrip()
        for prefix in PREFIXES:
            lines = lines.replace(prefix, "")
        print(lines)


# --- main -----------------------------------------------------------------------------------------


def options() -> argparse.Namespace:
    """Parse the command line; --quick fills what was not given with the small sizes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, help_ in (
        ("docs", "documents inserted before the snapshot"),
        ("events", "events appended after the snapshot"),
        ("files", "files in the tree"),
        ("bytes", "bytes in the tree"),
    ):
        parser.add_argument(f"--{name}", type=int, help=f"{help_} (default {DEFAULTS[name]:,})")
    parser.add_argument("--quick", action="store_true", help="10k docs, 100k events, 100 MiB")
    parser.add_argument("--only", choices=("documents", "files"), help="one kind of restore")
    parser.add_argument("--encrypted", action="store_true", help="an encrypted repository")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side (median)")
    parser.add_argument("--dir", type=Path, help="where the temporary files go")
    parser.add_argument("--profile", action="store_true", help="cProfile an untimed restore")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    sizes = QUICK if args.quick else DEFAULTS
    for name, default in sizes.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    args.profiles = {}
    return args


def main() -> None:
    """Run each part, print its table, the ratios and targets; remove everything."""
    args = options()
    leave_cleanly_on_sigterm()
    work = scratch_dir("bench-restore-", args.dir)
    secret = MasterSecret(key=os.urandom(32), origin="bench key")
    runs: list[Callable[[argparse.Namespace, Path, MasterSecret], Part]] = []
    if args.only != "files":
        runs.append(documents_part)
    if args.only != "documents":
        runs.append(files_part)
    print(describe(args), flush=True)
    parts: list[Part] = []
    try:
        for run in runs:
            parts.append(run(args, work, secret))
    except WrongRestore as exc:
        print(f"FAILED: {exc}")
        sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for part in parts:
        report(part)
    verdicts(parts)
    for part in parts:
        print(part.checked)
    for part in parts:
        for note in part.notes:
            print(note)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"bench process peak RSS {peak:,.0f} MB")
    print_profiles(args.profiles)


if __name__ == "__main__":
    main()
