"""What the journal says, for a scan: each file's last version, the recent destructive
events, and the restore points that hold a good version of something.

Terms:

version
    One captured state of a file (a row of its root's table): the event (``seq``) that
    wrote it, its size, SHA-256, stat fields and the ctime recorded at capture.
window
    The recent past a scan looks back over for destructive events the journal did capture
    (files deleted or truncated, collections dropped, documents deleted in bulk); older ones
    are taken as intended.
restore point
    Where a good version can be had: a backup whose cut holds it, a moment for
    ``recover restore --at`` (the capture time of that version), or a git commit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pyarrow as pa

from compaction.backups import FULL, Backup
from compaction.snapshots import Snapshots
from compaction.state_at import StateAt
from compaction.tables import FILESYSTEM, MONGODB
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.log import SegmentLog
from journal.meta import META_DEPLOYMENT, META_OLD_PATH, META_OP
from query.findings import RestorePoint

__all__ = [
    "FileVersion",
    "Recent",
    "RestorePoints",
    "file_versions",
    "iso_us",
]

SCAN_MARKER = "scan"  # capture's marker after a reconciling scan of a root
_COLUMNS = ("key", "seq", "ts", "size", "sha256", "blob", "mode", "mtime_ns", "ino", "ctime_ns")


class FileVersion(NamedTuple):
    """The journal's last version of one file."""

    seq: int
    ts: int  # the event's source time (µs): for files, the inode's change time
    size: int
    sha256: str  # as stored: empty for a secret file of a ``secrets`` repository
    blob: str
    mode: int
    mtime_ns: int
    ino: int
    ctime_ns: int | None  # None: captured before ctime was recorded
    link_target: str | None


def file_versions(state: StateAt, root: str) -> dict[str, FileVersion]:
    """Every live file of ``root`` at the state's cut, by root-relative path."""
    out: dict[str, FileVersion] = {}
    for table in state.tables:
        if table.ref.source == FILESYSTEM and table.ref.namespace == root:
            for batch in state.rows(table):
                out.update(_versions(batch))
    return out


def _versions(batch: pa.RecordBatch) -> Iterator[tuple[str, FileVersion]]:
    """Columns to Python lists once, then zipped: much cheaper than a dict per row."""
    ts = batch.column("ts").cast(pa.int64())
    columns = [ts if name == "ts" else batch.column(name) for name in _COLUMNS]
    keys, *rest = (c.to_pylist() for c in columns)
    links = batch.column("link_target").to_pylist()
    for key, seq, t, size, sha, blob, mode, mtime, ino, ctime, link in zip(
        keys, *rest, links, strict=True
    ):
        yield (
            key,
            FileVersion(seq, t, size, sha or "", blob or "", mode, mtime, ino or 0, ctime, link),
        )


def iso_us(us: int) -> str:
    """UTC ISO 8601 with microseconds and ``Z``: a moment ``recover restore --at`` takes."""
    return datetime.fromtimestamp(us // 1_000_000, UTC).strftime(
        f"%Y-%m-%dT%H:%M:%S.{us % 1_000_000:06d}Z"
    )


# ------------------------------------------------------------------------- recent events
class Before(NamedTuple):
    """A version seen in the window: enough to name it as a restore point."""

    seq: int
    capture_ts: int
    size: int


class Loss(NamedTuple):
    """A destructive event the journal captured: its seq, capture time, and the version it
    replaced (None when that version predates the window)."""

    seq: int
    capture_ts: int
    before: Before | None
    last_scan_us: int  # the root's newest scan before it (0: none in the window)


@dataclass
class Bulk:
    """Documents of one collection deleted in the window and not written again since, and
    the first deletion."""

    keys: set[str]
    first_seq: int
    first_us: int

    @property
    def count(self) -> int:
        return len(self.keys)


@dataclass
class Recent:
    """The destructive events of the window, folded from every event with seq >= ``start``.

    A ``SideState`` of ``state_at``, so the events after the nearest snapshot are read only
    once; the events before it, from ``start``, are fed by ``feed`` first.
    """

    start: int
    name: str = "query.scan"
    deleted: dict[tuple[str, str], Loss] = field(default_factory=dict)
    truncated: dict[tuple[str, str], Loss] = field(default_factory=dict)
    dropped: dict[tuple[str, str], Loss] = field(default_factory=dict)  # (deployment, ns)
    dropped_dbs: dict[tuple[str, str], Loss] = field(default_factory=dict)  # (deployment, db)
    bulk: dict[tuple[str, str], Bulk] = field(default_factory=dict)
    scans: dict[str, int] = field(default_factory=dict)  # root -> newest scan's capture time
    capture_ts: dict[int, int] = field(default_factory=dict)  # seq -> capture time, file events
    last_seq: int = 0
    last_us: int = 0
    _versions: dict[tuple[str, str], Before] = field(default_factory=dict)

    def load(self, doc: Any) -> None:
        """Nothing is carried in snapshots."""

    def dump(self) -> Any:
        return None

    def feed(self, log: SegmentLog, end: int) -> None:
        """Apply the events from ``start`` to ``end`` read from ``log``."""
        for batch in log.read_batches(self.start, end):
            for event in batch:
                self.apply(event)

    def apply(self, event: ChangeEvent) -> None:
        """Fold one event (those before ``start`` are ignored)."""
        if event.seq < self.start:
            return
        self.last_seq, self.last_us = event.seq, event.capture_ts
        if event.source is Source.FILESYSTEM:
            self._file(event)
        elif event.source is Source.MONGODB:
            self._document(event)
        elif event.op is Op.MARKER and event.key == SCAN_MARKER:
            self.scans[event.namespace] = event.capture_ts

    def _file(self, event: ChangeEvent) -> None:
        where = (event.namespace, event.key)
        meta = event.meta or {}
        if event.op is Op.MOVE and META_OLD_PATH in meta:
            self._versions.pop((event.namespace, meta[META_OLD_PATH]), None)
        if event.op is Op.DELETE:
            before = self._versions.pop(where, None)
            scan = self.scans.get(event.namespace, 0)
            self.deleted[where] = Loss(event.seq, event.capture_ts, before, scan)
            self.truncated.pop(where, None)
            return
        image = event.after
        if not isinstance(image, FileImage):
            return
        before = self._versions.get(where)
        self.capture_ts[event.seq] = event.capture_ts
        self._versions[where] = Before(event.seq, event.capture_ts, image.size)
        self.deleted.pop(where, None)
        # emptied: a version with content before it (in the window, or maybe before it)
        if image.size == 0 and (before.size > 0 if before else event.op is Op.MODIFY):
            scan = self.scans.get(event.namespace, 0)
            self.truncated[where] = Loss(event.seq, event.capture_ts, before, scan)
        else:
            self.truncated.pop(where, None)

    def _document(self, event: ChangeEvent) -> None:
        deployment = (event.meta or {}).get(META_DEPLOYMENT, "")
        where = (deployment, event.namespace)
        bulk = self.bulk.get(where)
        if event.op is not Op.DELETE:
            if bulk is not None and event.after:
                bulk.keys.discard(event.key)  # written again (e.g. restored)
            return
        if event.key:
            if bulk is None:
                self.bulk[where] = Bulk({event.key}, event.seq, event.capture_ts)
            else:
                bulk.keys.add(event.key)
            return
        loss = Loss(event.seq, event.capture_ts, None, 0)
        if (event.meta or {}).get(META_OP) == "dropDatabase":
            self.dropped_dbs.setdefault(where, loss)
        else:
            self.dropped.setdefault(where, loss)


# ------------------------------------------------------------------------ restore points
class RestorePoints:
    """Backups and moments that hold a given version, newest first."""

    def __init__(
        self, snapshots: Snapshots, log: SegmentLog, backups: Sequence[Backup], recent: Recent
    ) -> None:
        self.snapshots, self.log, self.recent = snapshots, log, recent
        self.backups = sorted(backups, key=lambda b: b.cut_seq, reverse=True)
        self._window_start: int | None = None
        self._window_known = False
        self._tables: dict[str, set[str]] = {}  # snapshot id -> its table ids

    def holding(
        self, first: int, until: int | None, until_us: int | None = None
    ) -> list[RestorePoint]:
        """Restore points whose cut lies in ``first .. until - 1`` (``until`` None: up to the
        journal's end); ``until_us`` is the capture time of event ``until``."""
        points = [
            RestorePoint("backup", b.id, int(b.point["cut_us"]))
            for b in self.backups
            if first <= b.cut_seq and (until is None or b.cut_seq < until)
        ]
        start = self.window_start()
        at = max(self.capture_us(first) or 0, start or 0)
        if start is not None and at and (until_us is None or at < until_us):
            points.append(RestorePoint("at", iso_us(at), at))
        return sorted(points, key=lambda p: p.time_us, reverse=True)

    def holding_table(
        self, table_id: str, until: int | None, until_us: int | None
    ) -> list[RestorePoint]:
        """Restore points before ``until`` whose cut holds the table ``table_id`` (a full
        backup's snapshot names it; an incremental one's base snapshot does), and the moment
        just before ``until`` (or the journal's last capture time if None)."""
        points = [
            RestorePoint("backup", b.id, int(b.point["cut_us"]))
            for b in self.backups
            if (until is None or b.cut_seq < until) and table_id in self._snapshot_tables(b)
        ]
        at = (until_us - 1) if until_us is not None else self.last_capture_us()
        start = self.window_start()
        if start is not None and at and at >= start:
            points.append(RestorePoint("at", iso_us(at), at))
        return sorted(points, key=lambda p: p.time_us, reverse=True)

    def _snapshot_tables(self, backup: Backup) -> set[str]:
        snap_id = backup.point.get("snapshot" if backup.type == FULL else "base_snapshot")
        if not snap_id:
            return set()
        if snap_id not in self._tables:
            try:
                snap = self.snapshots.catalog.load(snap_id)
                self._tables[snap_id] = {t for t, e in snap.tables.items() if e.rows}
            except Exception:  # a damaged or pruned manifest: this backup is no help
                self._tables[snap_id] = set()
        return self._tables[snap_id]

    def capture_us(self, seq: int) -> int | None:
        """When event ``seq`` was captured, or None when the journal no longer has it."""
        if seq in self.recent.capture_ts:
            return self.recent.capture_ts[seq]
        if seq < self.log.first_seq or seq >= self.log.next_seq:
            return None
        event = next(iter(self.log.read(seq, seq)), None)
        return event.capture_ts if event else None

    def last_capture_us(self) -> int:
        """The capture time of the journal's last event (0: empty)."""
        if self.recent.last_seq == self.log.next_seq - 1 and self.recent.last_us:
            return self.recent.last_us
        return self.capture_us(self.log.next_seq - 1) or 0

    def window_start(self) -> int | None:
        """The oldest moment ``recover restore --at`` accepts (as ``restore.moment`` does);
        None when there is none."""
        if not self._window_known:
            self._window_start, self._window_known = self._oldest_moment(), True
        return self._window_start

    def _oldest_moment(self) -> int | None:
        if self.log.first_seq <= 1:
            first = next(iter(self.log.read(1, 1)), None)
            return first.capture_ts if first else None
        usable = [i for i in self.snapshots.catalog.ids() if int(i) + 1 >= self.log.first_seq]
        return self.snapshots.catalog.load(usable[0]).cut_us if usable else None


def collection_table(deployment: str, namespace: str) -> str:
    """The table id of a collection (as in snapshot manifests)."""
    return f"{MONGODB}/{deployment}/{namespace}"
