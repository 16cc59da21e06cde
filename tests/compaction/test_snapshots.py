"""Snapshots: a chain of incremental snapshots plus replay equals replaying every event.

The oracle is a plain dictionary fold of FORMAT.md's "Rebuilding the state" rules, written
independently of the builder; random workloads are cut into random snapshot intervals.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import compaction.builder
from compaction.snapshots import Snapshots, snapshots_of
from journal.errors import CorruptionError
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.meta import META_DEPLOYMENT, META_OLD_PATH, META_OP, META_TO, META_TXN_END, SYNC_START
from journal.repository import Repository
from tests.conftest import new_key

State = dict[tuple[str, str, str], dict[str, Any]]  # (source, deployment, namespace) -> rows


def oracle(events: Iterable[ChangeEvent], state: State | None = None) -> State:
    """Replay ``events`` onto ``state`` (a copy) by the format's rules; empty tables dropped."""
    tables: State = {k: dict(v) for k, v in (state or {}).items()}
    for e in events:
        if e.source is Source.MONGODB:
            _fold_document(tables, e)
        elif e.source is Source.FILESYSTEM:
            _fold_file(tables.setdefault(("filesystem", "", e.namespace), {}), e)
    return {k: v for k, v in tables.items() if v}


def _fold_document(tables: State, e: ChangeEvent) -> None:
    meta = e.meta or {}
    dep = meta[META_DEPLOYMENT]
    tid = ("mongodb", dep, e.namespace)
    dropped: list[tuple[str, str, str]] = []
    if e.op is Op.MARKER and e.key == SYNC_START:
        dropped = [t for t in tables if t[1] == dep]
    elif e.op in (Op.INSERT, Op.UPDATE, Op.REPLACE) and e.after:
        tables.setdefault(tid, {})[e.key] = e.after
    elif e.op is Op.DELETE and e.key:
        tables.get(tid, {}).pop(e.key, None)
    elif e.op is Op.DELETE and meta.get(META_OP) == "dropDatabase":
        dropped = [t for t in tables if t[1] == dep and t[2].startswith(e.namespace + ".")]
    elif e.op is Op.DELETE:
        dropped = [tid] if tid in tables else []
    elif e.op is Op.MOVE:
        tables[("mongodb", dep, meta[META_TO])] = tables.pop(tid, {})
    for t in dropped:
        del tables[t]


def _fold_file(files: dict[str, Any], e: ChangeEvent) -> None:
    meta = e.meta or {}
    if e.op is Op.MOVE and META_OLD_PATH in meta:
        files.pop(meta[META_OLD_PATH], None)
    if e.op is Op.DELETE:
        for path in [p for p in files if p == e.key or p.startswith(e.key + "/")]:
            del files[path]
    elif isinstance(e.after, FileImage):
        files[e.key] = e.after


def snapshot_state(snaps: Snapshots, snap_id: str) -> State:
    """The state a stored snapshot holds, read back through its Parquet parts."""
    snap = snaps.catalog.load(snap_id)
    state: State = {}
    for e in snaps.events(snap):
        dep = (e.meta or {}).get(META_DEPLOYMENT, "")
        source = "mongodb" if e.source is Source.MONGODB else "filesystem"
        state.setdefault((source, dep, e.namespace), {})[e.key] = e.after
    return state


# ---------------------------------------------------------------- workloads
KEYS = [f"k{i}" for i in range(6)] + ['{"$numberInt": "1"}', '"1"']
NAMESPACES = ["app.conversations", "app.quotes", "crm.users"]
PATHS = ["config.py", "kb/a.json", "kb/b.json", "kb/sub/c.json", "src/x.ts"]


def _doc(n: int) -> bytes:
    return bson.encode({"_id": n, "text": "x" * (n % 50)})


@st.composite
def mongo_events(draw: st.DrawFn) -> ChangeEvent:
    dep = draw(st.sampled_from(["mongodb", "second"]))
    ns = draw(st.sampled_from(NAMESPACES))
    meta = {META_DEPLOYMENT: dep}
    kind = draw(
        st.sampled_from(["put"] * 8 + ["delete"] * 3 + ["drop", "dropdb", "rename", "sync"])
    )
    if kind == "put":
        op = draw(st.sampled_from([Op.INSERT, Op.UPDATE, Op.REPLACE]))
        after = None if op is Op.UPDATE and draw(st.booleans()) else _doc(draw(st.integers(0, 99)))
        return ChangeEvent(Source.MONGODB, ns, draw(st.sampled_from(KEYS)), op, 1, after, meta=meta)
    if kind == "delete":
        return ChangeEvent(Source.MONGODB, ns, draw(st.sampled_from(KEYS)), Op.DELETE, 1, meta=meta)
    if kind == "drop":
        return ChangeEvent(Source.MONGODB, ns, "", Op.DELETE, 1, meta={**meta, META_OP: "drop"})
    if kind == "dropdb":
        db = ns.split(".")[0]
        return ChangeEvent(
            Source.MONGODB, db, "", Op.DELETE, 1, meta={**meta, META_OP: "dropDatabase"}
        )
    if kind == "rename":
        to = draw(st.sampled_from(NAMESPACES))
        return ChangeEvent(Source.MONGODB, ns, "", Op.MOVE, 1, meta={**meta, META_TO: to})
    return ChangeEvent(Source.MONGODB, "", SYNC_START, Op.MARKER, 1, bson.encode({}), meta=meta)


@st.composite
def file_events(draw: st.DrawFn) -> ChangeEvent:
    root = draw(st.sampled_from(["app", "kb"]))
    path = draw(st.sampled_from(PATHS))
    kind = draw(st.sampled_from(["put"] * 4 + ["delete", "deldir", "move"]))
    image = FileImage(
        f"{draw(st.integers(0, 9)):064x}", draw(st.integers(0, 10**6)), "ab" * 32, 0o644, 5
    )
    if kind == "put":
        return ChangeEvent(Source.FILESYSTEM, root, path, Op.MODIFY, 1, image, meta={"ino": "7"})
    if kind == "delete":
        return ChangeEvent(Source.FILESYSTEM, root, path, Op.DELETE, 1)
    if kind == "deldir":
        return ChangeEvent(
            Source.FILESYSTEM, root, draw(st.sampled_from(["kb", "kb/sub", "src"])), Op.DELETE, 1
        )
    old = draw(st.sampled_from(PATHS))
    return ChangeEvent(Source.FILESYSTEM, root, path, Op.MOVE, 1, image, meta={META_OLD_PATH: old})


workloads = st.lists(st.one_of(mongo_events(), file_events()), min_size=1, max_size=60)


def _repo(tmp: Path, encrypted: bool) -> Repository:
    secret: MasterSecret | None = new_key() if encrypted else None
    Repository.init(tmp / "repo", secret or new_key("withheld"), encrypt_all=encrypted)
    return Repository.open(tmp / "repo", secret, writable=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=workloads,
    cuts=st.lists(st.integers(1, 60), max_size=5),
    encrypted=st.booleans(),
    budget=st.sampled_from([1, 10_000, 64 * 2**20]),
)
def test_snapshot_chain_plus_replay_equals_full_replay(
    events: list[ChangeEvent], cuts: list[int], encrypted: bool, budget: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp, _repo(Path(tmp), encrypted) as repo:
        repo.log.append(events)
        stored = list(repo.log.read())
        snaps = snapshots_of(repo)
        for cut in sorted({min(c, len(stored)) for c in cuts} | {len(stored)}):
            snap = snaps.take(repo.log, upto=cut, memory_budget=budget)  # small ones spill
            assert snap.cut_seq == cut
            assert snapshot_state(snaps, snap.id) == oracle(stored[:cut]), f"cut {cut}"
            rest = oracle(stored[cut:], snapshot_state(snaps, snap.id))
            assert rest == oracle(stored), f"snapshot at {cut} + replay"
        for snap_id in snaps.catalog.ids():
            snap = snaps.catalog.load(snap_id)
            expected = oracle(stored[: snap.cut_seq])
            for table in snap.tables.values():
                live = expected.get(table.ref, {})
                assert table.rows == len(live), f"{table.ref.id} row count"
                sizes = [len(v) if isinstance(v, bytes) else v.size for v in live.values()]
                assert table.bytes == sum(sizes), f"{table.ref.id} bytes"


def _put(i: int, key: str = "k") -> ChangeEvent:
    meta = {META_DEPLOYMENT: "mongodb"}
    return ChangeEvent(Source.MONGODB, "app.c", f"{key}{i:06d}", Op.INSERT, 1, _doc(i), meta=meta)


def test_a_small_delta_writes_one_small_part_and_reuses_the_rest(tmp_path: Path) -> None:
    with _repo(tmp_path, encrypted=False) as repo:
        snaps = snapshots_of(repo)
        repo.log.append([_put(i) for i in range(5000)])
        base = snaps.take(repo.log)
        repo.log.append([_put(i, "n") for i in range(10)])
        delta = snaps.take(repo.log)
        base_parts = base.tables["mongodb/mongodb/app.c"].parts
        parts = delta.tables["mongodb/mongodb/app.c"].parts
        assert parts[: len(base_parts)] == base_parts, "the base part is reused, not rewritten"
        assert parts[-1].rows == 10, parts
        assert delta.tables["mongodb/mongodb/app.c"].rows == 5010


def test_parts_merge_size_tiered(tmp_path: Path) -> None:
    with _repo(tmp_path, encrypted=False) as repo:
        snaps = snapshots_of(repo)
        for round_ in range(40):
            repo.log.append([_put(i, f"r{round_}-") for i in range(50)])
            snap = snaps.take(repo.log)
        table = snap.tables["mongodb/mongodb/app.c"]
        assert table.rows == 2000
        assert len(table.parts) <= 6, [p.rows for p in table.parts]
        rows = [p.rows for p in table.parts]
        assert all(rows[i] > compaction.builder.FANOUT * rows[i + 1] for i in range(len(rows) - 2))


def test_an_unfinished_transaction_stays_out_of_the_snapshot(tmp_path: Path) -> None:
    def txn(i: int, end: bool) -> ChangeEvent:
        meta = {META_DEPLOYMENT: "mongodb", **({META_TXN_END: "1"} if end else {})}
        return _put(i)._replace(txn="t1", meta=meta)

    with _repo(tmp_path, encrypted=False) as repo:
        snaps = snapshots_of(repo)
        repo.log.append([_put(0), txn(1, False), txn(2, False)])
        snap = snaps.take(repo.log)
        assert snap.cut_seq == 1, "the cut stops before the transaction"
        repo.log.append([txn(3, True)])
        snap = snaps.take(repo.log)
        assert snap.cut_seq == 4
        assert snap.tables["mongodb/mongodb/app.c"].rows == 4


def test_side_state_is_carried_across_snapshots(tmp_path: Path) -> None:
    class Counter:
        name = "counter"

        def load(self, doc: Any) -> None:
            self.n = doc or 0

        def apply(self, event: ChangeEvent) -> None:
            self.n += 1

        def dump(self) -> Any:
            return self.n

    with _repo(tmp_path, encrypted=True) as repo:
        snaps = snapshots_of(repo)
        repo.log.append([_put(i) for i in range(3)])
        snaps.take(repo.log, [Counter()])
        repo.log.append([_put(i, "x") for i in range(4)])
        assert snaps.take(repo.log, [Counter()]).state == {"counter": 7}


def test_a_damaged_plain_manifest_is_rejected(tmp_path: Path) -> None:
    with _repo(tmp_path, encrypted=False) as repo:
        snaps = snapshots_of(repo)
        repo.log.append([_put(1)])
        snap = snaps.take(repo.log)
        path = repo.root / snap.key
        path.write_text(path.read_text().replace('"rows": 1', '"rows": 2'))
        with pytest.raises(CorruptionError, match="checksum"):
            snaps.catalog.load(snap.id)


def test_an_encrypted_manifest_hides_names_and_authenticates(tmp_path: Path) -> None:
    with _repo(tmp_path, encrypted=True) as repo:
        snaps = snapshots_of(repo)
        repo.log.append([_put(1)])
        snap = snaps.take(repo.log)
        path = repo.root / snap.key
        raw = bytearray(path.read_bytes())
        assert b"app.c" not in raw and b"k000001" not in raw, "names stay private"
        raw[-5] ^= 1
        path.write_bytes(bytes(raw))
        with pytest.raises(CorruptionError, match="does not authenticate"):
            snaps.catalog.load(snap.id)


def test_a_rename_onto_its_own_name_keeps_the_collection(tmp_path: Path) -> None:
    meta = {META_DEPLOYMENT: "mongodb", META_TO: "app.c"}
    with _repo(tmp_path, encrypted=False) as repo:
        snaps = snapshots_of(repo)
        repo.log.append([_put(1), ChangeEvent(Source.MONGODB, "app.c", "", Op.MOVE, 1, meta=meta)])
        assert snaps.take(repo.log).tables["mongodb/mongodb/app.c"].rows == 1
