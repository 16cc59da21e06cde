"""Restoring MongoDB documents: compare each collection at the cut with the live one, then
write the differences in unordered bulk batches.

Actions mirror files (``restore.files``): ``identical`` (same BSON bytes: skipped),
``create``, ``overwrite`` (what is live is the journal's newest version), ``delete`` (in place
only: the journal knows the document, it did not exist at the cut, and the live one is the
newest version) and ``conflict`` (the live document holds a change Hindsight has not
captured). Documents the journal never knew are never touched. Documents are compared and
written as exact BSON (``RawBSONDocument``): types, field order and ``_id`` types survive.
A dropped collection is recreated with its recorded options and indexes first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bson import json_util
from bson.raw_bson import RawBSONDocument
from pymongo import DeleteOne, InsertOne, ReplaceOne
from pymongo.errors import BulkWriteError, CollectionInvalid, PyMongoError

from compaction.state_at import StateAt
from compaction.tables import MONGODB
from journal.canonical import canonical_key
from journal.errors import SourceUnavailable
from restore.files import Action, Strategy
from restore.merge import MergeImpossible, merge_documents

__all__ = [
    "DocPlan",
    "DocResults",
    "apply_documents",
    "namespaces",
    "plan_documents",
]

BATCH = 1000
DUPLICATE_KEY = 11000  # MongoDB's error code: a document with that _id exists


@dataclass
class DocPlan:
    """Per target collection (``db.coll``): counts per action and the writes to make."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    writes: dict[str, list[tuple[Action, str, bytes | None, bytes | None, bytes | None]]] = field(
        default_factory=dict
    )  # (action, key, restored body, live body, newest body)
    recreate: dict[str, bytes] = field(default_factory=dict)  # collection -> metadata BSON

    def count(self, target: str, action: Action) -> None:
        per = self.counts.get(target)
        if per is None:  # not setdefault: that builds the zeroed dict on every document
            per = self.counts[target] = {a.value: 0 for a in Action}
        per[action.value] += 1


@dataclass
class DocResults:
    """What applying a plan did, per target collection."""

    written: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    merged: dict[str, list[str]] = field(default_factory=dict)  # "coll key" -> fields kept live
    failed: dict[str, str] = field(default_factory=dict)
    recreated: list[str] = field(default_factory=list)
    touched: dict[str, list[str]] = field(default_factory=dict)  # target -> keys written/deleted


def _rows(state: StateAt, deployment: str, namespace: str) -> Iterator[tuple[str, bytes]]:
    for table in state.tables:
        ref = table.ref
        if ref.source == MONGODB and ref.deployment == deployment and ref.namespace == namespace:
            for batch in state.rows(table):
                keys, bodies = batch["key"].to_pylist(), batch["body"].to_pylist()
                yield from zip(keys, bodies, strict=True)


def namespaces(state: StateAt, deployment: str) -> list[str]:
    """The collections of ``deployment`` that hold documents in ``state``."""
    return sorted(
        t.ref.namespace
        for t in state.tables
        if t.ref.source == MONGODB and t.ref.deployment == deployment
    )


def plan_documents(
    at: StateAt,
    head: StateAt,
    client: Any,
    deployment: str,
    targets: dict[str, str],
    *,
    in_place: bool,
    metadata: dict[str, bytes],
    only: dict[str, set[str]] | None = None,
    purge: bool = False,
) -> DocPlan:
    """Compare each source collection (``targets``: source ``db.coll`` -> target ``db.coll``)
    at the cut with the live target; ``metadata`` holds recorded collection options.

    ``only`` (per source collection, journal keys) limits the plan to those documents. With
    ``purge`` (a rollback, ``only`` being what a restore touched), a key of ``only`` absent at
    the cut is deleted wherever it is live, even if the journal never saw it (the restore
    wrote it).
    """
    plan = DocPlan()
    for source, target in targets.items():
        db, _, coll = target.partition(".")
        try:
            exists = coll in client[db].list_collection_names()
        except PyMongoError as exc:
            msg = f"MongoDB cannot be reached to restore {target}: {exc}"
            raise SourceUnavailable(msg) from exc
        if not exists and source in metadata:
            plan.recreate[target] = metadata[source]
        keys = None if only is None else only.get(source, set())
        collection = client[db][coll]
        if not exists or _empty(collection, target):  # nothing live: nothing to compare
            _plan_creates(plan, at, deployment, source, target, keys)
            continue
        newest = dict(_rows(head, deployment, source))
        if keys is not None:
            newest = {k: v for k, v in newest.items() if k in keys}
        restored = _plan_restored(plan, at, deployment, source, collection, target, newest, keys)
        if in_place and exists:
            _deletes(plan, collection, target, newest, restored)
            if keys is not None and purge:
                _unknown_deletes(plan, collection, target, keys - restored - newest.keys())
    return plan


def _plan_restored(
    plan: DocPlan,
    at: StateAt,
    deployment: str,
    source: str,
    collection: Any,
    target: str,
    newest: dict[str, bytes],
    keys: set[str] | None,
) -> set[str]:
    """Plan the documents of ``source`` at the cut (only ``keys``, when given); their keys."""
    restored: set[str] = set()
    batch: list[tuple[str, bytes]] = []
    for key, body in _rows(at, deployment, source):
        if keys is not None and key not in keys:
            continue
        restored.add(key)
        batch.append((key, body))
        if len(batch) >= BATCH:
            _compare(plan, collection, target, batch, newest)
            batch = []
    if batch:
        _compare(plan, collection, target, batch, newest)
    return restored


def _empty(collection: Any, target: str) -> bool:
    """Whether the collection holds no document."""
    try:
        return collection.find_one({}, projection={"_id": 1}) is None
    except PyMongoError as exc:
        raise SourceUnavailable(f"MongoDB cannot be reached to restore {target}: {exc}") from exc


def _plan_creates(
    plan: DocPlan, at: StateAt, deployment: str, source: str, target: str, keys: set[str] | None
) -> None:
    """Every document of ``source`` at the cut (only ``keys``, when given) as a create: the
    target holds none, so none is looked up (one that appears meanwhile is a conflict when
    applied, see ``apply_documents``)."""
    writes = plan.writes.setdefault(target, [])
    before = len(writes)
    create = Action.CREATE
    writes.extend(
        (create, key, body, None, None)
        for key, body in _rows(at, deployment, source)
        if keys is None or key in keys
    )
    if len(writes) > before:  # counted once, not per document
        plan.count(target, create)
        plan.counts[target][create.value] += len(writes) - before - 1


def _live(collection: Any, bodies: list[bytes]) -> dict[str, bytes]:
    ids = [RawBSONDocument(b)["_id"] for b in bodies]
    found = collection.find({"_id": {"$in": ids}})
    return {canonical_key(doc["_id"]): bytes(doc.raw) for doc in found}


def _compare(
    plan: DocPlan,
    collection: Any,
    target: str,
    batch: list[tuple[str, bytes]],
    newest: dict[str, bytes],
) -> None:
    live = _live(collection, [b for _, b in batch])
    writes = plan.writes.setdefault(target, [])
    for key, body in batch:
        now = live.get(key)
        if now is None:
            action = Action.CREATE
        elif now == body:
            action = Action.IDENTICAL
        elif newest.get(key) == now:
            action = Action.OVERWRITE
        else:
            action = Action.CONFLICT
        plan.count(target, action)
        if action is not Action.IDENTICAL:
            writes.append((action, key, body, now, newest.get(key)))


def _deletes(
    plan: DocPlan, collection: Any, target: str, newest: dict[str, bytes], restored: set[str]
) -> None:
    gone = [body for key, body in newest.items() if key not in restored]
    for i in range(0, len(gone), BATCH):
        live = _live(collection, gone[i : i + BATCH])
        for body in gone[i : i + BATCH]:
            key = canonical_key(RawBSONDocument(body)["_id"])
            now = live.get(key)
            if now is None:
                continue
            action = Action.DELETE if now == body else Action.CONFLICT
            plan.count(target, action)
            plan.writes.setdefault(target, []).append((action, key, None, now, body))


def _unknown_deletes(plan: DocPlan, collection: Any, target: str, keys: set[str]) -> None:
    """Delete the live documents of ``keys``, which the journal does not know."""
    ids = [json_util.loads(k) for k in sorted(keys)]
    for i in range(0, len(ids), BATCH):
        for doc in collection.find({"_id": {"$in": ids[i : i + BATCH]}}):
            plan.count(target, Action.DELETE)
            key = canonical_key(doc["_id"])
            plan.writes.setdefault(target, []).append(
                (Action.DELETE, key, None, bytes(doc.raw), None)
            )


def apply_documents(
    plan: DocPlan,
    client: Any,
    strategy: Strategy,
    progress: Callable[[int], None] | None = None,
) -> DocResults:
    """Recreate dropped collections, then write each collection's changes in unordered
    bulk batches; a failed batch is reported per document and the rest go on.

    A create is an insert of the exact bytes, so a document that appeared since the plan is
    never silently replaced: its duplicate key makes it a conflict, which ``strategy``
    decides (overwrite replaces it; any other strategy skips it, counted in ``skipped`` and
    left out of ``touched``). ``progress`` is told how many planned documents each batch
    settled."""
    results = DocResults()
    for target, metadata in plan.recreate.items():
        _recreate(client, target, metadata)
        results.recreated.append(target)
    for target, writes in plan.writes.items():
        db, _, coll = target.partition(".")
        collection = client[db][coll]
        ops: list[tuple[Any, str, bytes | None]] = []  # (operation, key, restored body)
        touched = results.touched.setdefault(target, [])
        for action, key, body, live, newest in writes:
            op = _operation(action, key, body, live, newest, strategy, target, results)
            if op is not None:
                ops.append((op, key, body))
                touched.append(key)
        kept: set[str] = set()  # creates that met a live document and were skipped
        if progress is not None and len(writes) > len(ops):
            progress(len(writes) - len(ops))  # skipped without a write
        for i in range(0, len(ops), BATCH):
            kept |= _bulk(collection, target, ops[i : i + BATCH], results, strategy)
            if progress is not None:
                progress(len(ops[i : i + BATCH]))
        if kept:
            results.touched[target] = [k for k in touched if k not in kept]
    return results


def _operation(
    action: Action,
    key: str,
    body: bytes | None,
    live: bytes | None,
    newest: bytes | None,
    strategy: Strategy,
    target: str,
    results: DocResults,
) -> Any:
    if action is Action.CREATE and body is not None:  # the exact bytes, inserted
        return InsertOne(RawBSONDocument(body))
    kept = (Strategy.SKIP, Strategy.RENAME, Strategy.PROMPT)  # no prompt per document
    skip = action is Action.CONFLICT and strategy in kept
    if skip or (body is None and action is Action.CONFLICT and strategy is Strategy.MERGE):
        results.skipped[target] = results.skipped.get(target, 0) + 1
        return None
    ident = RawBSONDocument(body if body is not None else live)["_id"]  # type: ignore[arg-type]
    if body is None:
        return DeleteOne({"_id": ident})
    if action is Action.CONFLICT and strategy is Strategy.MERGE and live is not None:
        try:
            merged = merge_documents(newest, live, body)
        except MergeImpossible as exc:
            results.failed[f"{target} {key}"] = exc.reason
            return None
        results.merged[f"{target} {key}"] = list(merged.conflicts)
        body = merged.data
    return ReplaceOne({"_id": ident}, RawBSONDocument(body), upsert=True)


def _bulk(
    collection: Any,
    target: str,
    batch: list[tuple[Any, str, bytes | None]],
    results: DocResults,
    strategy: Strategy,
) -> set[str]:
    """Write ``batch`` (operation, key, restored body); the keys of creates skipped as
    conflicts."""
    errors: list[dict[str, Any]] = []
    try:
        outcome = collection.bulk_write([op for op, _, _ in batch], ordered=False)
        written = outcome.inserted_count + outcome.upserted_count + outcome.matched_count
        deleted = outcome.deleted_count
    except BulkWriteError as exc:
        details = exc.details
        errors = details.get("writeErrors", [])
        written = sum(details.get(n, 0) for n in ("nInserted", "nUpserted", "nMatched"))
        deleted = details.get("nRemoved", 0)
    except PyMongoError as exc:
        raise SourceUnavailable(f"MongoDB failed while restoring {target}: {exc}") from exc
    results.written[target] = results.written.get(target, 0) + written
    results.deleted[target] = results.deleted.get(target, 0) + deleted
    duplicates: list[tuple[str, bytes, str]] = []
    for error in errors:
        op, key, body = batch[error["index"]]
        if isinstance(op, InsertOne) and body is not None and error.get("code") == DUPLICATE_KEY:
            duplicates.append((key, body, str(error.get("errmsg"))))
        else:
            results.failed[f"{target} {key}"] = str(error.get("errmsg"))
    return _duplicates(collection, target, duplicates, results, strategy) if duplicates else set()


def _duplicates(
    collection: Any,
    target: str,
    duplicates: list[tuple[str, bytes, str]],
    results: DocResults,
    strategy: Strategy,
) -> set[str]:
    """Creates refused as duplicates (key, body, message): where a document with that _id
    is live now (created meanwhile) a conflict, which only overwrite replaces (one with the
    very bytes restored is left as it is); else (a unique index) a failure. The keys of the
    live documents kept."""
    try:
        live = _live(collection, [body for _, body, _ in duplicates])
    except PyMongoError as exc:
        raise SourceUnavailable(f"MongoDB failed while restoring {target}: {exc}") from exc
    retry: list[tuple[Any, str, bytes | None]] = []
    kept: set[str] = set()
    for key, body, message in duplicates:
        if key not in live:
            results.failed[f"{target} {key}"] = message
        elif live[key] == body:
            kept.add(key)  # identical: nothing to write, nothing to undo
        elif strategy is Strategy.OVERWRITE:
            doc = RawBSONDocument(body)
            retry.append((ReplaceOne({"_id": doc["_id"]}, doc, upsert=True), key, body))
        else:
            results.skipped[target] = results.skipped.get(target, 0) + 1
            kept.add(key)
    if retry:
        kept |= _bulk(collection, target, retry, results, strategy)
    return kept


def _recreate(client: Any, target: str, metadata: bytes) -> None:
    """Create a dropped collection with its recorded options, then its indexes."""
    db, _, coll = target.partition(".")
    meta = RawBSONDocument(metadata) if metadata else {}
    options = dict(meta.get("options") or {})
    options.pop("uuid", None)
    try:
        client[db].create_collection(coll, **options)
    except CollectionInvalid:
        pass  # created meanwhile
    except PyMongoError as exc:
        raise SourceUnavailable(f"cannot recreate collection {target}: {exc}") from exc
    for index in meta.get("indexes") or []:
        spec = dict(index)
        if spec.get("name") == "_id_":
            continue
        keys = list(dict(spec.pop("key")).items())
        spec.pop("v", None)
        spec.pop("ns", None)
        try:
            client[db][coll].create_index(keys, **spec)
        except PyMongoError as exc:
            name = spec.get("name")
            raise SourceUnavailable(f"cannot recreate index {name} on {target}: {exc}") from exc
