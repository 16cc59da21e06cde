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
from bson import Binary, Int64, ObjectId, json_util
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


def files_of(tree: Path) -> Files:
    """Every protected regular file under ``tree``: content and permission bits."""
    if not tree.exists():
        return {}
    return {
        rel: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode))
        for p in sorted(tree.rglob("*"))
        if p.is_file() and (rel := p.relative_to(tree).as_posix()) not in UNPROTECTED
    }


def docs_of(client: MongoClient[RawBSONDocument], db: str) -> Docs:
    """Every document of the oracle's collections in ``db``, as exact BSON."""
    return {
        coll: {bson.encode({"_id": d["_id"]}): bytes(d.raw) for d in client[db][coll].find()}
        for coll in COLLECTIONS
    }


def world_of(tree: Path, client: MongoClient[RawBSONDocument]) -> World:
    return World(files_of(tree), docs_of(client, DB))


# --- the workload -------------------------------------------------------------------------


class Workload:
    """Random changes to the tree and the database; ``truth`` is refreshed after each step."""

    def __init__(self, rng: random.Random, tree: Path, client: MongoClient[Any]) -> None:
        self.rng, self.tree, self.db = rng, tree, client[DB]
        self.serial = 0
        self.truth = World({}, {c: {} for c in COLLECTIONS})
        self.dead: dict[str, list[Any]] = {c: [] for c in COLLECTIONS}  # deleted _ids

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
        rng, existing = self.rng, sorted(self.truth.files)
        kind = rng.choices(["write", "delete", "chmod", "rename", "rmtree", "other"],
                           weights=[10, 3, 3, 2, 1, 1])[0]  # fmt: skip
        if kind == "write" or not existing:
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
            lambda: n,  # int32; never also a str or an Int64 of the same number (nx-27017)
            lambda: f"cliente-{n:04d}",
            lambda: ObjectId(rng.randbytes(12)),
            lambda: Int64(10**12 + n),
            lambda: {"tenant": rng.choice(["acme", "globex"]), "n": n},
        ]
        return rng.choice(kinds)()

    def value(self, depth: int = 0) -> Any:
        rng = self.rng
        scalars: list[Callable[[], Any]] = [
            lambda: rng.randrange(-1000, 10**6),
            lambda: Int64(rng.randrange(-(2**62), 2**62)),
            lambda: rng.uniform(-1e6, 1e6),
            self.text,
            lambda: rng.random() < 0.5,
            lambda: None,
            lambda: EPOCH + datetime.timedelta(milliseconds=rng.randrange(10**10)),
            lambda: ObjectId(rng.randbytes(12)),
            lambda: Binary(rng.randbytes(rng.randrange(20)), rng.choice([0, 4])),
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
        return [bson.decode(key)["_id"] for key in self.truth.docs[coll]]

    def fresh_id(self, coll: str) -> Any:
        """A new ``_id``, or now and then one deleted earlier (coming back with a new body)."""
        dead = self.dead[coll]
        if dead and self.rng.random() < 0.3:
            return dead.pop(self.rng.randrange(len(dead)))
        return self.new_id()

    def doc_step(self) -> None:
        rng = self.rng
        coll = rng.choice(COLLECTIONS)
        c, ids = self.db[coll], self.ids(coll)
        kind = rng.choices(["insert", "insert_many", "set", "unset", "replace", "delete",
                            "delete_many", "empty"], weights=[4, 2, 4, 2, 2, 2, 1, 0.3])[0]  # fmt: skip
        if kind == "insert_many" or not ids:
            c.insert_many([self.body(self.fresh_id(coll)) for _ in range(rng.randrange(2, 7))])
        elif kind == "insert":
            c.insert_one(self.body(self.fresh_id(coll)))
        elif kind == "set":
            c.update_one({"_id": rng.choice(ids)}, {"$set": self.fields(rng.randrange(1, 4))})
        elif kind == "unset":
            c.update_one({"_id": rng.choice(ids)}, {"$unset": dict.fromkeys(rng.sample(FIELDS, 2), "")})
        elif kind == "replace":
            ident = rng.choice(ids)
            c.replace_one({"_id": ident}, {k: v for k, v in self.body(ident).items() if k != "_id"})
        elif kind == "delete":
            ident = rng.choice(ids)
            c.delete_one({"_id": ident})
            self.dead[coll].append(ident)
        else:
            query = {} if kind == "empty" else {"grp": rng.randrange(5)}
            gone = [d["_id"] for d in c.find(query)]
            c.delete_many(query)
            self.dead[coll] += gone

    def seed(self) -> None:
        for name in FILES:
            self.write(name)
        for name in UNPROTECTED:
            self.write(name)
        for coll in COLLECTIONS:
            self.db[coll].insert_many([self.body(self.new_id()) for _ in range(12)])

    def step(self) -> None:
        for _ in range(self.rng.randrange(1, 4)):
            if self.rng.random() < 0.5:
                self.file_step()
            else:
                self.doc_step()
