"""Backups: named restore points of the journal, with the brief's metadata.

A backup is a *cut* (a journal sequence number) that a restore can return to, plus what it
needs to do so:

- a **full** backup owns a snapshot at its cut; it restores from that snapshot alone.
- an **incremental** backup seals the journal's active segment and records the range of
  events since the previous backup; it restores from its *base* (the newest full backup at or
  before it) plus a replay of the journal from the base's cut to its own.

``metadata`` holds exactly the brief's fields; ``point`` what Hindsight needs. Records live in
``backups/<backup_id>.json``, encrypted in an encrypted repository (``signed_json``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compaction.signed_json import load_document, save_document
from compaction.snapshot import Snapshot
from journal.codec import AesGcm
from journal.errors import AuthError, CorruptionError, HindsightError, NotFound, RepositoryError
from journal.protocols import Store

__all__ = [
    "BACKUP_DIR",
    "FULL",
    "INCREMENTAL",
    "Backup",
    "BackupCatalog",
    "backup_id_at",
    "iso_time",
    "segments_checksum",
    "snapshot_checksum",
]

BACKUP_DIR = "backups"
FULL, INCREMENTAL = "full", "incremental"
ID_FORMAT = "backup_%Y%m%d_%H%M%S"


def iso_time(us: int) -> str:
    """UTC ISO-8601 with a ``Z``, to the second, as the brief's metadata shows times."""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backup_id_at(us: int) -> str:
    """The id of a backup taken at ``us`` (UTC)."""
    return datetime.fromtimestamp(us / 1e6, UTC).strftime(ID_FORMAT)


@dataclass
class Backup:
    """One backup record: the brief's ``metadata`` and Hindsight's ``point``.

    ``point`` keys: ``cut_seq``, ``cut_us`` (capture time of the event at the cut),
    ``created_us``, ``snapshot`` (full: its snapshot id), ``base`` and ``base_snapshot``
    (incremental: the full backup it replays from, and that backup's snapshot, which is kept
    while the incremental is, even if the full backup itself is deleted), ``first_seq``
    (incremental: first event it covers), and ``verify_problems`` (the last verification's
    findings).
    """

    metadata: dict[str, Any]
    point: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.metadata["backup_id"])

    @property
    def type(self) -> str:
        return str(self.metadata["type"])

    @property
    def cut_seq(self) -> int:
        return int(self.point["cut_seq"])

    @property
    def created_us(self) -> int:
        return int(self.point["created_us"])

    @property
    def key(self) -> str:
        return f"{BACKUP_DIR}/{self.id}.json"

    def to_doc(self) -> dict[str, Any]:
        return {"format": 1, "metadata": self.metadata, "point": self.point}


class BackupCatalog:
    """The backup records of one repository."""

    def __init__(self, root: Path, store: Store, cipher: AesGcm | None) -> None:
        self.root, self.store, self.cipher = root, store, cipher

    def ids(self) -> list[str]:
        """Every backup id, oldest first (ids sort by time)."""
        folder = self.root / BACKUP_DIR
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("backup_*.json"))

    def all(self) -> list[Backup]:
        """Every backup, oldest first; a damaged record raises (pruning must know them all)."""
        return [self.get(i) for i in self.ids()]

    def readable(self) -> tuple[list[Backup], list[HindsightError]]:
        """Every backup that can be read, and the errors of those that cannot (for listing:
        one damaged record must not hide the others)."""
        backups: list[Backup] = []
        damaged: list[HindsightError] = []
        for backup_id in self.ids():
            try:
                backups.append(self.get(backup_id))
            except (CorruptionError, AuthError) as exc:
                damaged.append(exc)
        return backups, damaged

    def get(self, backup_id: str) -> Backup:
        """One backup; NotFound names the ids that exist when it does not."""
        key = f"{BACKUP_DIR}/{backup_id}.json"
        try:
            doc = load_document(self.store, key, self.cipher)
        except NotFound:
            hint = "; run `hindsight backup list` to see them" if self.ids() else ""
            raise NotFound(f"no backup {backup_id!r}{hint}") from None
        try:
            backup = Backup(dict(doc["metadata"]), dict(doc["point"]))
            if backup.id != backup_id:
                raise ValueError(f"it describes {backup.id}")
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptionError(f"backup record is malformed: {exc}", path=key) from exc
        return backup

    def save(self, backup: Backup) -> None:
        """Write (or update) a record atomically."""
        save_document(self.store, backup.key, backup.to_doc(), self.cipher)

    def delete(self, backup_id: str) -> None:
        """Remove a record (the data it used is freed by garbage collection)."""
        self.store.delete(f"{BACKUP_DIR}/{backup_id}.json")

    def new_id(self, now_us: int, sleep: Any = time.sleep) -> tuple[str, int]:
        """A fresh id and its time: the next second if this one is taken (ids are unique)."""
        taken = set(self.ids())
        while backup_id_at(now_us) in taken:
            wait = 1 - (now_us % 1_000_000) / 1e6
            sleep(wait)
            now_us += int(wait * 1e6) + 1
        return backup_id_at(now_us), now_us

    def latest(
        self, type_: str | None = None, at_or_before_seq: int | None = None
    ) -> Backup | None:
        """The newest readable backup (of ``type_``, with a cut at or before the given seq)."""
        for backup in reversed(self.readable()[0]):
            if type_ and backup.type != type_:
                continue
            if at_or_before_seq is not None and backup.cut_seq > at_or_before_seq:
                continue
            return backup
        return None

    def dependents(self, backup_id: str) -> list[Backup]:
        """Incremental backups that restore from ``backup_id``."""
        return [b for b in self.all() if b.point.get("base") == backup_id]

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise writers of backups, snapshots and pruning across processes."""
        folder = self.root / BACKUP_DIR
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RepositoryError(
                    "another backup, verification or prune is running on this repository; "
                    "wait for it to finish"
                ) from None
            yield
        finally:
            os.close(fd)


def snapshot_checksum(snap: Snapshot) -> str:
    """The ``verification.checksum`` of a full backup: its snapshot's tables and parts."""
    body = json.dumps(snap.to_doc()["tables"], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(body.encode()).hexdigest()


def segments_checksum(segments: Iterable[tuple[str, str]]) -> str:
    """The ``verification.checksum`` of an incremental backup: its segments' names and hashes."""
    digest = hashlib.sha256()
    for name, sha in segments:
        digest.update(f"{name}:{sha}\n".encode())
    return "sha256:" + digest.hexdigest()
