"""Recovery operation records: what each restore was asked, did, and touched.

A record (``recoveries/<operation_id>.json``, sealed in an encrypted repository) holds the
brief's fields (operation_id ``recover_YYYYMMDD_HHMMSS``, backup_id, status, started_at,
completed_at, options, results, errors) plus what a rollback needs: ``before_seq``, the
seq of the restore's ``restore-start`` marker in the journal (everything it overwrites is
in the journal by then, so the state at that seq is "before"). Every item it wrote or
deleted is listed apart, in ``recoveries/<operation_id>.touched`` (it can be long, and
listing the history never needs it): files as ``<root>/<path>``, documents per deployment
and collection as their journal keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compaction.signed_json import load_document, save_document
from journal.codec import AesGcm
from journal.errors import CorruptionError, NotFound
from journal.events import ChangeEvent, Op, Source, now_us
from journal.log import SegmentLog
from journal.meta import META_OPERATION, RESTORE_NAMESPACE, RESTORE_START
from journal.protocols import Store

__all__ = [
    "COMPLETED",
    "FAILED",
    "IN_PROGRESS",
    "PENDING",
    "RECOVERY_DIR",
    "Operation",
    "OperationCatalog",
    "Touched",
    "append_restore_start",
]

RECOVERY_DIR = "recoveries"
TOUCHED_SUFFIX = ".touched"
ID_FORMAT = "recover_%Y%m%d_%H%M%S"
PENDING, IN_PROGRESS, COMPLETED, FAILED = "pending", "in_progress", "completed", "failed"


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Touched:
    """Every item a restore wrote or deleted."""

    files: list[str] = field(default_factory=list)  # "<root>/<path>"
    documents: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # dep -> ns -> keys

    def __bool__(self) -> bool:
        return bool(self.files) or any(any(v.values()) for v in self.documents.values())


@dataclass
class Operation:
    """One recovery operation; ``record`` is exactly the brief's fields."""

    record: dict[str, Any]
    before_seq: int = 0
    touched: Touched = field(default_factory=Touched)

    @property
    def id(self) -> str:
        return str(self.record["operation_id"])

    def to_doc(self) -> dict[str, Any]:
        return {"format": 1, "record": self.record, "before_seq": self.before_seq}


class OperationCatalog:
    """The recovery records of one repository."""

    def __init__(self, root: Path, store: Store, cipher: AesGcm | None) -> None:
        self.root, self.store, self.cipher = root, store, cipher

    def new(self, backup_id: str | None, options: dict[str, Any], before_seq: int) -> Operation:
        """A pending operation with a fresh id (the next free second)."""
        now = now_us()
        taken = set(self.ids())
        while _id_at(now) in taken:
            now += 1_000_000
        record: dict[str, Any] = {
            "operation_id": _id_at(now),
            "backup_id": backup_id,
            "status": PENDING,
            "started_at": _iso(now_us()),
            "completed_at": None,
            "options": options,
            "results": {"restored": 0, "failed": 0, "skipped": 0, "conflicts": 0},
            "errors": [],
        }
        op = Operation(record, before_seq)
        self.save(op)
        return op

    def ids(self) -> list[str]:
        """Every operation id, oldest first."""
        folder = self.root / RECOVERY_DIR
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("recover_*.json"))

    def get(self, op_id: str) -> Operation:
        """The record of ``op_id`` (without what it touched: ``touched``)."""
        key = f"{RECOVERY_DIR}/{op_id}.json"
        try:
            doc = load_document(self.store, key, self.cipher)
        except NotFound:
            raise NotFound(
                f"no recovery operation {op_id!r}; `hindsight recover history` lists them"
            ) from None
        try:
            return Operation(dict(doc["record"]), int(doc["before_seq"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptionError(f"recovery record is malformed: {exc}", path=key) from exc

    def touched(self, op: Operation) -> Touched:
        """What ``op`` wrote or deleted; nothing if it never got to write."""
        key = f"{RECOVERY_DIR}/{op.id}{TOUCHED_SUFFIX}"
        try:
            doc = load_document(self.store, key, self.cipher)
        except NotFound:
            return Touched()
        try:
            documents = {
                str(dep): {str(ns): [str(k) for k in keys] for ns, keys in per.items()}
                for dep, per in doc["documents"].items()
            }
            return Touched([str(f) for f in doc["files"]], documents)
        except (KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(f"recovery record is malformed: {exc}", path=key) from exc

    def save(self, op: Operation) -> None:
        """Write the record; what it touched first, when known (data before what points at it)."""
        if op.touched:
            doc = {"format": 1, **dataclasses.asdict(op.touched)}
            save_document(self.store, f"{RECOVERY_DIR}/{op.id}{TOUCHED_SUFFIX}", doc, self.cipher)
        save_document(self.store, f"{RECOVERY_DIR}/{op.id}.json", op.to_doc(), self.cipher)

    def finish(
        self, op: Operation, status: str, results: dict[str, int], errors: list[str]
    ) -> None:
        """Record the outcome."""
        op.record |= {
            "status": status,
            "completed_at": _iso(now_us()),
            "results": results,
            "errors": errors,
        }
        self.save(op)


def append_restore_start(log: SegmentLog, op_id: str) -> int:
    """Append (durably) the marker a restore writes before its first write; its seq."""
    marker = ChangeEvent(
        Source.SYSTEM, RESTORE_NAMESPACE, RESTORE_START, Op.MARKER, now_us(),
        meta={META_OPERATION: op_id},
    )  # fmt: skip
    seq = log.append([marker]).last
    log.sync()
    return seq


def _id_at(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime(ID_FORMAT)
