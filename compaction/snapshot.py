"""The snapshot manifest: which Parquet parts make up each table as of one journal seq.

A snapshot at *cut* ``cut_seq`` is the state replay of events ``1..cut_seq`` gives. Each
table is a list of parts, oldest first; a key's version is the one in the newest part that
holds it. Parts are immutable and shared: a new snapshot reuses its predecessor's parts and
adds a part with what changed, so the manifest is the only thing written per table that did
not change. ``state`` holds, per named consumer (e.g. capture's MongoDB resume positions),
the JSON it asked to carry across the cut.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from compaction.signed_json import load_document, save_document
from compaction.tables import TableRef
from journal.codec import AesGcm
from journal.errors import CorruptionError, NotFound
from journal.protocols import Store

__all__ = ["PART_DIR", "SNAPSHOT_DIR", "PartEntry", "Snapshot", "SnapshotCatalog", "TableEntry"]

SNAPSHOT_DIR = "snapshots"
PART_DIR = "snapshots/parts"
SNAPSHOT_FORMAT = 1


class PartEntry(NamedTuple):
    """One Parquet part: its file, checksum, stored size, row count (tombstones too), and
    the SHA-256 of its key index (``part_keys``)."""

    file: str
    sha256: str
    size: int
    rows: int
    keys_sha256: str


@dataclass
class TableEntry:
    """A table in a snapshot: its parts, live row count and logical bytes."""

    ref: TableRef
    parts: list[PartEntry] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0

    def to_doc(self) -> dict[str, Any]:
        return {
            "source": self.ref.source,
            "deployment": self.ref.deployment,
            "namespace": self.ref.namespace,
            "rows": self.rows,
            "bytes": self.bytes,
            "parts": [p._asdict() for p in self.parts],
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> TableEntry:
        ref = TableRef(doc["source"], doc["deployment"], doc["namespace"])
        parts = [PartEntry(**p) for p in doc["parts"]]
        return cls(ref, parts, int(doc["rows"]), int(doc["bytes"]))


@dataclass
class Snapshot:
    """One snapshot manifest."""

    cut_seq: int
    cut_us: int  # capture time of the event at the cut (0 for an empty journal)
    created_us: int
    previous: str | None
    tables: dict[str, TableEntry] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """The cut as 20 digits: one snapshot per cut, ordered by name."""
        return snapshot_id(self.cut_seq)

    @property
    def key(self) -> str:
        """Where the manifest is stored."""
        return f"{SNAPSHOT_DIR}/{self.id}.json"

    def parts(self) -> Iterator[PartEntry]:
        """Every part every table uses (a part appears once per table that uses it)."""
        for table in self.tables.values():
            yield from table.parts

    @property
    def stored_bytes(self) -> int:
        """Bytes of the distinct parts this snapshot needs."""
        return sum(p.size for p in {p.file: p for p in self.parts()}.values())

    def to_doc(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "id": self.id,
            "cut_seq": self.cut_seq,
            "cut_us": self.cut_us,
            "created_us": self.created_us,
            "previous": self.previous,
            "tables": [t.to_doc() for _, t in sorted(self.tables.items())],
            "state": self.state,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any], key: str) -> Snapshot:
        try:
            if doc["format"] != SNAPSHOT_FORMAT:
                raise ValueError(f"unknown snapshot format {doc['format']!r}")
            tables = [TableEntry.from_doc(t) for t in doc["tables"]]
            snap = cls(
                int(doc["cut_seq"]),
                int(doc["cut_us"]),
                int(doc["created_us"]),
                doc["previous"],
                {t.ref.id: t for t in tables},
                dict(doc["state"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptionError(f"snapshot manifest is malformed: {exc}", path=key) from exc
        if snap.key != key:
            raise CorruptionError(f"manifest describes snapshot {snap.id}", path=key)
        return snap


def snapshot_id(cut_seq: int) -> str:
    """The id of the snapshot at ``cut_seq``."""
    return f"{cut_seq:020d}"


class SnapshotCatalog:
    """The snapshot manifests of one repository."""

    def __init__(self, root: Path, store: Store, cipher: AesGcm | None) -> None:
        self.root, self.store, self.cipher = root, store, cipher

    def ids(self) -> list[str]:
        """Ids of every stored snapshot, oldest cut first."""
        folder = self.root / SNAPSHOT_DIR
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))

    def load(self, snap_id: str) -> Snapshot:
        """Read and check one manifest."""
        key = f"{SNAPSHOT_DIR}/{snap_id}.json"
        try:
            doc = load_document(self.store, key, self.cipher)
        except NotFound:
            raise NotFound(f"snapshot {snap_id} does not exist", path=key) from None
        return Snapshot.from_doc(doc, key)

    def latest(self, at_or_before_seq: int | None = None) -> Snapshot | None:
        """The newest snapshot whose cut is at or before ``at_or_before_seq`` (any if None)."""
        for snap_id in reversed(self.ids()):
            if at_or_before_seq is None or int(snap_id) <= at_or_before_seq:
                return self.load(snap_id)
        return None

    def save(self, snap: Snapshot) -> None:
        """Write the manifest, after every part it names is durable."""
        save_document(self.store, snap.key, snap.to_doc(), self.cipher)

    def delete(self, snap_id: str) -> None:
        """Remove a manifest (its parts are removed by garbage collection)."""
        self.store.delete(f"{SNAPSHOT_DIR}/{snap_id}.json")

    def referenced_parts(self, snap_ids: list[str] | None = None) -> set[str]:
        """Files of every part the given (default: all) snapshots use."""
        ids = self.ids() if snap_ids is None else snap_ids
        return {p.file for snap_id in ids for p in self.load(snap_id).parts()}
