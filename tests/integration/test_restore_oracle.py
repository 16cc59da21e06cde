"""The point-in-time recovery oracle (issue #6): files and MongoDB documents together.

A seeded random workload edits a protected tree and a MongoDB database (nx-27017). After
every step Hindsight captures it with the one-shot capture the CLI uses, and the test records
the moment and the ground truth: every protected file's bytes and permission bits, and every
document's exact BSON (``RawBSONDocument``: field order and ``_id`` types included). Full and
incremental backups are taken now and then. Restoring to 50 random recorded moments and to
every backup, each into a fresh directory and a fresh database, must give exactly the ground
truth of that moment, with deleted items absent; so must restoring in place, back to an
earlier moment and then forward to the latest one.
"""

from __future__ import annotations

import datetime
import json
import random
import shutil
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
import pytest
from bson import Int64, ObjectId, json_util
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from compaction.backup_maker import Scope
from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.recovery_service import RecoveryService, Target
from hindsight.wiring import open_repository
from journal.events import now_us
from restore.files import Action, Strategy
from tests.integration.mongo_server import MongoServer

SEED = 20_06
STEPS = 120
BACKUP_EVERY = 15
MOMENTS_CHECKED = 50
DB = "chatbot"
COLLECTIONS = ("users", "cotizaciones", "sessions")  # among the protected defaults
FIELDS = ("zeta", "total", "items", "alpha", "meta", "name", "grp", "when", "blob", "score")
FILES = (
    *(".env", "config.py", "package.json", "requirements.txt"),
    *("conocimiento_consolidado.json", "base_conocimiento_ventas.json"),
    *("base_conocimiento_soporte.json", "kb_populated_2024.json", "catalogo_productos.json"),
    *("productos_activos.json", "src/index.ts", "src/.env.local", "src/lib/util.ts"),
    *("src/lib/deep/nested/mod.ts", "src/components/Chat.tsx", "src/components/Quote.tsx"),
    *("src/assets/logo.bin", "src/assets/big.bin", "python-scripts/sync.py"),
    *("python-scripts/tools/migrate.py", "python-scripts/tools/__init__.py"),
    *("python-scripts/run.sh", "n8n_workflows/main.json", "n8n_workflows/sub/flow_1.json"),
    *("n8n_workflows/sub/flow_2.json", "test_scenarios/basic.yaml"),
    *("test_scenarios/deep/er/edge.yaml", "src/credentials.json"),
)
UNPROTECTED = ("notes.txt", "src/node_modules/dep/index.js", "src/draft.tmp", "logs/app.log")
FILE_STEPS = {"write": 10, "delete": 3, "chmod": 3, "rename": 2, "rmtree": 1, "unprotected": 1}
DOC_STEPS: dict[str, float] = {"insert": 4, "insert_many": 2, "set": 4, "unset": 2}
DOC_STEPS |= {"replace": 2, "delete": 2, "delete_many": 1, "empty": 0.3}
FULL_OR_INCREMENTAL = ("full", "incremental", "incremental")
MODES = (0o600, 0o644, 0o755)
EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)

Files = dict[str, tuple[bytes, int]]
Docs = dict[str, dict[bytes, bytes]]  # collection -> {BSON of {"_id": id}: exact document}


@dataclass(frozen=True)
class World:
    """The ground truth at one instant."""

    files: Files
    docs: Docs


@dataclass(frozen=True)
class Instant:
    """A restore target and the ground truth it must give back."""

    label: str
    target: Target
    truth: World


# --- reading the ground truth -------------------------------------------------------------


def files_of(tree: Path, *, skip: tuple[str, ...] = ()) -> Files:
    """Every regular file under ``tree`` but those in ``skip``: content and permission bits."""
    if not tree.exists():
        return {}
    return {
        rel: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(tree.rglob("*"))
        if p.is_file() and (rel := p.relative_to(tree).as_posix()) not in skip
    }


def docs_of(client: MongoClient[Any], db: str) -> Docs:
    """Every document of every collection in ``db`` (the oracle's at least), as exact BSON;
    ``client`` must hand documents over as ``RawBSONDocument``."""
    names = sorted({*COLLECTIONS, *client[db].list_collection_names()})
    return {
        coll: {bson.encode({"_id": d["_id"]}): bytes(d.raw) for d in client[db][coll].find()}
        for coll in names
    }


def world_of(tree: Path, client: MongoClient[Any]) -> World:
    """The live ground truth: the protected files and the database."""
    return World(files_of(tree, skip=UNPROTECTED), docs_of(client, DB))


# --- the workload -------------------------------------------------------------------------


class Workload:
    """Random changes to the tree and the database; ``truth`` is refreshed after each step."""

    def __init__(self, rng: random.Random, tree: Path, client: MongoClient[Any]) -> None:
        self.rng, self.tree, self.db = rng, tree, client[DB]
        self.serial = 0
        self.truth = World({}, {c: {} for c in COLLECTIONS})
        self.dead: dict[str, dict[bytes, Any]] = {c: {} for c in COLLECTIONS}  # deleted _ids
        self.done: Counter[str] = Counter()  # the kinds of change made, to prove coverage

    # files
    def content(self, name: str) -> bytes:
        rng = self.rng
        if name.endswith(".json"):
            kb = {f"q{rng.randrange(999)}": {"a": self.text(), "n": rng.random()} for _ in "xyz"}
            return json.dumps(kb, ensure_ascii=False, indent=rng.choice([None, 2])).encode()
        if name.endswith(".bin"):
            return rng.randbytes(rng.choice([0, 1, 4096, 70_000, 200_000]))
        return "\n".join(self.text() for _ in range(rng.randrange(1, 30))).encode()

    def text(self) -> str:
        words = ["hola", "cotización", "precio", "envío", "日本", "ok", "x" * 40, "€"]
        return " ".join(self.rng.choices(words, k=self.rng.randrange(1, 8)))

    def write(self, name: str) -> None:
        path = self.tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        old = path.read_bytes() if path.exists() else b""
        if old and self.rng.random() < 0.2:  # same size, other bytes: only the mtime tells
            path.write_bytes(self.rng.randbytes(len(old)))
        else:
            path.write_bytes(self.content(name))
        if self.rng.random() < 0.3:
            path.chmod(self.rng.choice(MODES))

    def file_step(self) -> None:
        rng, existing = self.rng, sorted(files_of(self.tree, skip=UNPROTECTED))
        kind = rng.choices(list(FILE_STEPS), weights=list(FILE_STEPS.values()))[0]
        kind = kind if existing else "write"
        self.done[f"file {kind}"] += 1
        if kind == "write":
            self.write(rng.choice(FILES))
        elif kind == "delete":
            (self.tree / rng.choice(existing)).unlink()
        elif kind == "chmod":
            (self.tree / rng.choice(existing)).chmod(rng.choice(MODES))
        elif kind == "rename":
            new = self.tree / rng.choice(FILES)
            new.parent.mkdir(parents=True, exist_ok=True)
            (self.tree / rng.choice(existing)).replace(new)
        elif kind == "rmtree":
            shutil.rmtree(self.tree / rng.choice(["src/lib", "n8n_workflows/sub", "src/assets"]),
                          ignore_errors=True)  # fmt: skip
        else:
            self.write(rng.choice(UNPROTECTED))

    # documents
    def new_id(self) -> Any:
        self.serial += 1
        n, rng = self.serial, self.rng
        kinds: list[Callable[[], Any]] = [
            # nx-27017 ignores the type in _id lookups and cannot look up an embedded document
            # _id at all, and lookups of datetime _ids ignore milliseconds: ids of distinct types
            # never share a value, none is a document, datetimes are whole seconds
            lambda: n,
            lambda: f"cliente-{n:04d}",
            lambda: ObjectId(rng.randbytes(12)),
            lambda: Int64(10**12 + n),
            lambda: n + 0.5,
            lambda: EPOCH.replace(tzinfo=None) + datetime.timedelta(seconds=n),
        ]
        return rng.choice(kinds)()

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        # no Binary: nx-27017 fails every replace of a document holding one, and restores replace
        scalars: list[Callable[[], Any]] = [
            lambda: rng.randrange(-1000, 10**6),
            lambda: Int64(rng.randrange(-(2**62), 2**62)),
            lambda: rng.uniform(-1e6, 1e6),
            self.text,
            lambda: rng.random() < 0.5,
            lambda: None,
            lambda: EPOCH + datetime.timedelta(milliseconds=rng.randrange(10**10)),
            lambda: ObjectId(rng.randbytes(12)),
        ]
        if depth < 2:
            scalars += [
                lambda: [self.value(depth + 1) for _ in range(rng.randrange(4))],
                lambda: {k: self.value(depth + 1) for k in rng.sample(FIELDS, rng.randrange(4))},
            ]
        return rng.choice(scalars)()

    def fields(self, count: int) -> dict[str, Any]:
        """``count`` random fields in a random (non-alphabetical) order."""
        names = self.rng.sample(FIELDS, count)
        return {f: self.rng.randrange(5) if f == "grp" else self.value() for f in names}

    def body(self, ident: Any) -> dict[str, Any]:
        return {"_id": ident, **self.fields(self.rng.randrange(1, len(FIELDS)))}

    def ids(self, coll: str) -> list[Any]:
        """The live ``_id``s (read afresh: one step may change a collection several times)."""
        return [d["_id"] for d in self.db[coll].find()]

    def fresh_id(self, coll: str) -> Any:
        """A new ``_id``, or now and then one deleted earlier (coming back with a new body)."""
        dead = self.dead[coll]
        if dead and self.rng.random() < 0.3:
            return dead.pop(self.rng.choice(sorted(dead)))
        return self.new_id()

    def buried(self, coll: str, ids: list[Any]) -> None:
        self.dead[coll].update({bson.encode({"_id": i}): i for i in ids})

    def doc_step(self) -> None:
        rng = self.rng
        coll = rng.choice(COLLECTIONS)
        c, ids = self.db[coll], self.ids(coll)
        kind = rng.choices(list(DOC_STEPS), weights=list(DOC_STEPS.values()))[0]
        kind = kind if ids else "insert_many"
        self.done[f"document {kind}"] += 1
        if kind == "insert_many":
            c.insert_many([self.body(self.fresh_id(coll)) for _ in range(rng.randrange(2, 7))])
        elif kind == "insert":
            c.insert_one(self.body(self.fresh_id(coll)))
        elif kind == "set":
            c.update_one({"_id": rng.choice(ids)}, {"$set": self.fields(rng.randrange(1, 4))})
        elif kind == "unset":
            c.update_one(
                {"_id": rng.choice(ids)}, {"$unset": dict.fromkeys(rng.sample(FIELDS, 2), "")}
            )
        elif kind == "replace":  # as applications do, without the _id in the replacement
            ident = rng.choice(ids)
            c.replace_one({"_id": ident}, {k: v for k, v in self.body(ident).items() if k != "_id"})
        elif kind == "delete":
            ident = rng.choice(ids)
            c.delete_one({"_id": ident})
            self.buried(coll, [ident])
        else:
            query = {} if kind == "empty" else {"grp": rng.randrange(5)}
            self.buried(coll, [d["_id"] for d in c.find(query)])
            c.delete_many(query)

    def seed(self) -> None:
        """The app before Hindsight is set up: every file, a dozen documents per collection."""
        for name in FILES:
            self.write(name)
        for name in UNPROTECTED:
            self.write(name)
        for coll in COLLECTIONS:
            self.db[coll].insert_many([self.body(self.new_id()) for _ in range(12)])

    def step(self) -> None:
        """One to three changes, to files or documents."""
        for _ in range(self.rng.randrange(1, 4)):
            if self.rng.random() < 0.5:
                self.file_step()
            else:
                self.doc_step()


# --- comparing ----------------------------------------------------------------------------


def _id_text(key: bytes) -> str:
    ident = bson.decode(key)["_id"]
    return str(json_util.dumps(ident, json_options=json_util.CANONICAL_JSON_OPTIONS))


def _doc_text(raw: bytes) -> str:
    doc = RawBSONDocument(raw)
    return str(json_util.dumps(doc, json_options=json_util.CANONICAL_JSON_OPTIONS))


def _file_text(item: tuple[bytes, int]) -> str:
    data, mode = item
    return f"{len(data)} bytes {data[:24]!r}..., mode {mode:04o}"


def differences(
    what: str, want: Mapping[Any, Any], got: Mapping[Any, Any], name: Callable[[Any], str],
    show: Callable[[Any], str],
) -> list[str]:  # fmt: skip
    """One line per item that is missing, present but absent from the truth, or different."""
    lines = [f"{what} {name(k)} missing (want {show(want[k])})" for k in want if k not in got]
    lines += [f"{what} {name(k)} should be absent (got {show(v)})" for k, v in got.items()
              if k not in want]  # fmt: skip
    lines += [
        f"{what} {name(k)} differs:\n      want {show(v)}\n      got  {show(got[k])}"
        for k, v in want.items()
        if k in got and got[k] != v
    ]
    return lines


def compare(truth: World, files: Files, docs: Docs) -> list[str]:
    """Every difference between a restored world and the ground truth."""
    lines = differences("file", truth.files, files, str, _file_text)
    for coll in sorted({*truth.docs, *docs}):
        want, got = truth.docs.get(coll, {}), docs.get(coll, {})
        lines += differences(f"{coll} _id", want, got, _id_text, _doc_text)
    return lines


def _failed(report: dict[str, Any]) -> dict[str, Any]:
    """The files and documents a restore reported as failed."""
    failed = dict(report["failed"])
    for name, documents in report["documents"].items():
        failed |= {f"{name} {where}": why for where, why in documents["failed"].items()}
    return failed


# --- the oracle ---------------------------------------------------------------------------


@dataclass
class Oracle:
    """The protected app, the service restoring it and the instants recorded so far."""

    service: RecoveryService
    workload: Workload
    raw: MongoClient[Any]  # hands documents over as RawBSONDocument
    tree: Path
    root: str  # the tree's root name: restores with ``to`` write under ``to/<root>``
    moments: list[Instant]
    backups: list[Instant]

    def capture(self, label: str) -> Instant:
        """Capture (the one-shot capture of the CLI), then record the moment and the truth."""
        self.service.backups.capture_now(Scope())
        moment = now_us()
        self.workload.truth = world_of(self.tree, self.raw)
        instant = Instant(label, Target(moment_us=moment, text=label), self.workload.truth)
        self.moments.append(instant)
        while now_us() <= moment:  # whatever changes next is captured strictly after it
            pass
        return instant

    def backup(self, type_: str, after: Instant) -> None:
        """A backup now: nothing changed since ``after``, so its truth is the same."""
        backup = self.service.backups.create(type_, Scope()).backup
        label = f"{backup.type} backup {backup.id} (taken after {after.label})"
        self.backups.append(Instant(label, Target(backup_id=backup.id), after.truth))

    def restore_fresh(self, instant: Instant, to: Path, db: str) -> list[str]:
        """Restore into an empty directory and database; the differences from the truth."""
        _, plan = self.service.plan(instant.target, to=to, to_db=db)
        actions = Counter(i.action.value for i in plan.items)
        for documents in self.service.documents.values():
            for counts in documents.counts.values():
                actions.update({a: n for a, n in counts.items() if n})
        assert set(actions) <= {Action.CREATE.value}, f"{instant.label}: empty targets, {actions}"
        options = {"to": str(to), "to_db": db}
        _, report = self.service.restore(instant.target, plan, Strategy.OVERWRITE, options=options)
        assert not _failed(report), f"{instant.label}: {_failed(report)}"
        problems = compare(instant.truth, files_of(to / self.root), docs_of(self.raw, db))
        self.raw.drop_database(db)  # so that later captures have nothing more to copy
        return problems

    def restore_in_place(self, instant: Instant) -> list[str]:
        """Capture first (as ``hindsight recover restore`` does), restore the live tree and
        database, and return the differences from the truth."""
        self.service.backups.capture_now(Scope())
        unprotected = {n: (self.tree / n).read_bytes() for n in UNPROTECTED}
        _, plan = self.service.plan(instant.target)
        problems = [f"file {i.path}: a conflict" for i in plan.items if i.action is Action.CONFLICT]
        for documents in self.service.documents.values():
            problems += [
                f"{target}: {counts[Action.CONFLICT.value]} documents in conflict"
                for target, counts in documents.counts.items()
                if counts[Action.CONFLICT.value]
            ]
        options: dict[str, Any] = {"to": None}
        _, report = self.service.restore(instant.target, plan, Strategy.OVERWRITE, options=options)
        assert not _failed(report), f"in place, {instant.label}: {_failed(report)}"
        problems += compare(
            instant.truth, files_of(self.tree, skip=UNPROTECTED), docs_of(self.raw, DB)
        )
        problems += [
            f"unprotected file {n} was touched" for n, data in unprotected.items()
            if (self.tree / n).read_bytes() != data
        ]  # fmt: skip
        return problems


def _report(label: str, problems: list[str], limit: int = 8) -> str:
    more = f"\n    ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{label}: {len(problems)} difference(s)\n    " + "\n    ".join(problems[:limit]) + more


@pytest.fixture
def oracle(workdir: Path, mongo_server: MongoServer) -> Iterator[Oracle]:
    """The seeded app with Hindsight set up on it and the service open on its repository."""
    tree = workdir / "app"
    tree.mkdir()
    with mongo_server.client() as app, mongo_server.client(document_class=RawBSONDocument) as raw:
        workload = Workload(random.Random(SEED), tree, app)
        workload.seed()
        assert main(["init", "--protect", str(tree), "--mongodb", mongo_server.uri]) == 0
        config = load_config(workdir / "hindsight.toml")
        root = config.sources.filesystem[0].name
        with RecoveryService(config, open_repository(config, writable=True)) as service:
            yield Oracle(service, workload, raw, tree, root, [], [])


def test_restoring_to_any_moment_or_backup_gives_exactly_the_ground_truth(oracle: Oracle) -> None:
    rng = random.Random(SEED + 1)
    oracle.capture("the moment after the initial sync")
    for i in range(1, STEPS + 1):
        oracle.workload.step()
        instant = oracle.capture(f"the moment after step {i}")
        if i % BACKUP_EVERY == 0:
            oracle.backup("full" if i == BACKUP_EVERY else rng.choice(FULL_OR_INCREMENTAL), instant)
    kinds = {f"file {k}" for k in FILE_STEPS} | {f"document {k}" for k in DOC_STEPS}
    assert kinds <= set(oracle.workload.done), f"never done: {kinds - set(oracle.workload.done)}"
    assert {b.label.split()[0] for b in oracle.backups} == {"full", "incremental"}

    failures = []
    targets = [*rng.sample(oracle.moments, MOMENTS_CHECKED), *oracle.backups]
    for n, instant in enumerate(targets):
        to, db = oracle.tree.parent / f"restored-{n}", f"restored_{n}"
        problems = oracle.restore_fresh(instant, to, db)
        if problems:
            failures.append(_report(f"into {to.name} and {db}, {instant.label}", problems))

    # in place: back to an earlier moment (deleting what came later), then forward again
    earlier, latest = oracle.moments[len(oracle.moments) // 3], oracle.moments[-1]
    for a, b in ((earlier, latest), (latest, earlier)):  # each restore must delete something
        assert set(a.truth.files) - set(b.truth.files), f"no file only at {a.label}"
        assert any(set(a.truth.docs[c]) - set(b.truth.docs[c]) for c in COLLECTIONS), a.label
    for instant in (earlier, latest):
        problems = oracle.restore_in_place(instant)
        if problems:
            failures.append(_report(f"in place, {instant.label}", problems))
    checked = f"{len(targets) + 2} restores ({len(targets)} into fresh targets, 2 in place)"
    assert not failures, f"{len(failures)} of {checked} differ from the truth:\n" + "\n".join(
        failures
    )
