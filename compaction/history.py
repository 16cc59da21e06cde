"""History: the event metadata of sealed journal segments as Parquet, for column-wise queries.

*History* is what happened without the after-images: one row per event (seq, times, source,
deployment, namespace, key, op, size and hash of the after-image, ...; ``HISTORY_SCHEMA``).
Each sealed segment gets one file, ``history/<its first_seq as 20 digits>.parquet``; the
active segment never does. The fixed name makes ``export`` idempotent, and
``history/index.json`` lists every file with its SHA-256, size and sequence range, so a
reader lists and checks files without listing the directory.

Crash-safe order: a file is durable before the index names it, and the index forgets a file
before it is unlinked, so the index never names a missing or half-written file. A history
file the index does not name is the leftover of a crash; ``export`` deletes it. Writers
(``export``, ``remove``) take ``history/LOCK``; readers (``files``, ``verify``) do not lock.

In an encrypted repository the files are sealed (``ParquetStore``); the index holds only
file names, hashes, sizes and sequence ranges, which the journal's own names reveal anyway.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import pyarrow as pa

from compaction.parquet_store import ParquetStore
from journal.errors import AuthError, ConfigError, CorruptionError, HindsightError, RepositoryError
from journal.events import ChangeEvent, FileImage
from journal.fsutil import atomic_write
from journal.integrity import Problem
from journal.log import SegmentLog
from journal.manifest import SegmentInfo
from journal.meta import META_DEPLOYMENT, META_OLD_PATH
from journal.repository import Repository

__all__ = [
    "BATCH_ROWS",
    "HISTORY_DIR",
    "HISTORY_SCHEMA",
    "INDEX_FILE",
    "ExportReport",
    "HistoryExport",
    "HistoryFile",
    "history_batch",
    "history_file_name",
    "history_row",
]

HISTORY_DIR = "history"
INDEX_FILE = f"{HISTORY_DIR}/index.json"
LOCK_FILE = f"{HISTORY_DIR}/LOCK"
INDEX_FORMAT = 1
BATCH_ROWS = 64 * 1024
"""Events per record batch (and Parquet row group): bounds the memory an export holds."""

_SEGMENT_NAME = re.compile(r"[0-9]{20}\.seg")
_HISTORY_NAME = re.compile(r"[0-9]{20}\.parquet")

Progress = Callable[[int, int], None]

_TIME = pa.timestamp("us", tz="UTC")
_CATEGORY = pa.dictionary(pa.int32(), pa.string())  # few distinct values per file
HISTORY_SCHEMA = pa.schema(
    [
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("source_ts", _TIME, nullable=False),
        pa.field("capture_ts", _TIME, nullable=False),
        pa.field("source", _CATEGORY, nullable=False),
        pa.field("deployment", _CATEGORY),
        pa.field("namespace", _CATEGORY, nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("op", _CATEGORY, nullable=False),
        pa.field("size", pa.int64()),
        pa.field("hash", pa.string()),
        pa.field("blob", pa.string()),
        pa.field("txn", pa.string()),
        pa.field("old_path", pa.string()),
        pa.field("segment", _CATEGORY, nullable=False),
    ]
)
"""The columns of a history file; docs/FORMAT.md ("History") defines each."""


class HistoryFile(NamedTuple):
    """One history file as the index records it."""

    segment: str  # the journal segment it was made from, e.g. "00000000000000000001.seg"
    file: str  # relative to the repository
    first_seq: int
    last_seq: int
    rows: int
    size: int
    sha256: str


@dataclass
class ExportReport:
    """What one ``export`` wrote, and the segments it could not read."""

    files: list[HistoryFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Rows written."""
        return sum(f.rows for f in self.files)

    @property
    def bytes(self) -> int:
        """Bytes written."""
        return sum(f.size for f in self.files)

    @property
    def ok(self) -> bool:
        """True when every sealed segment was readable."""
        return not self.problems


def history_file_name(segment: str) -> str:
    """The history file (relative to the repository) of a segment name; ConfigError if bad."""
    if not _SEGMENT_NAME.fullmatch(segment):
        raise ConfigError(f"{segment!r} is not a segment name (20 digits and .seg)")
    return f"{HISTORY_DIR}/{segment.removesuffix('.seg')}.parquet"


class HistoryExport:
    """The history files of one repository: export, list, verify, remove."""

    def __init__(self, log: SegmentLog, store: ParquetStore) -> None:
        self.log, self.store = log, store
        self.root = store.root

    @classmethod
    def of(cls, repo: Repository) -> HistoryExport:
        """The history of ``repo``, sealed exactly when the repository encrypts everything."""
        return cls(repo.log, ParquetStore(repo.root, repo.file_keys if repo.encrypted else None))

    # ---------------------------------------------------------------- writing
    def export(self, progress: Progress | None = None) -> ExportReport:
        """Write the history file of every sealed segment that has none; nothing else.

        Re-running writes nothing new. A segment that cannot be read (damaged) is reported
        in ``problems`` and skipped, so later segments are still exported.
        ``progress(done, total)`` is told events after each file.
        """
        report = ExportReport()
        with self._locked():
            index = self._load_index()
            self._sweep(index)
            todo = [s for s in self._sealed() if s.name not in index]
            total, done = sum(s.event_count for s in todo), 0
            for info in todo:
                try:
                    entry = self._export_segment(info)
                except (CorruptionError, AuthError) as exc:
                    path = exc.path or f"journal/{info.name}"
                    report.problems.append(Problem(path, exc.offset, exc.reason))
                    continue
                index[info.name] = entry
                self._save_index(index)  # after the file is durable
                report.files.append(entry)
                done += info.event_count
                if progress:
                    progress(done, total)
        return report

    def _sealed(self) -> list[SegmentInfo]:
        if not self.log.writable:
            self.log.refresh()  # a reader sees new seals only by re-reading the manifest
        return list(self.log.manifest.segments)

    def _export_segment(self, info: SegmentInfo) -> HistoryFile:
        name = history_file_name(info.name)
        directory, _, base = name.rpartition("/")
        stored = self.store.write(directory, HISTORY_SCHEMA, self._batches(info), name=base)
        return HistoryFile(
            info.name,
            stored.file,
            info.first_seq,
            info.last_seq,
            stored.rows,
            stored.size,
            stored.sha256,
        )

    def _batches(self, info: SegmentInfo) -> Iterator[pa.RecordBatch]:
        """The segment's events as record batches of BATCH_ROWS; checks the seqs are whole."""
        rows: list[tuple[object, ...]] = []
        expected = info.first_seq
        for events in self.log.read_batches(info.first_seq, info.last_seq):
            for event in events:
                if event.seq != expected:
                    raise CorruptionError(
                        f"read seq {event.seq} where {expected} was expected",
                        path=f"journal/{info.name}",
                    )
                expected += 1
                rows.append(history_row(event, info.name))
                if len(rows) == BATCH_ROWS:
                    yield history_batch(rows)
                    rows = []
        if expected != info.last_seq + 1:
            raise CorruptionError(
                f"events end at seq {expected - 1}, the manifest says {info.last_seq}",
                path=f"journal/{info.name}",
            )
        if rows:
            yield history_batch(rows)

    def remove(self, segments: Iterable[str]) -> list[HistoryFile]:
        """Delete the history files of ``segments`` (names such as "000...1.seg").

        For segments pruned from the journal: a segment still sealed in the journal is
        exported again by the next ``export``. The index forgets the files first, then they
        are unlinked, so a crash in between leaves only unindexed leftovers (which ``export``
        and a repeated ``remove`` delete). Returns the index entries removed.
        """
        names = list(segments)
        files = [history_file_name(name) for name in names]
        with self._locked():
            index = self._load_index()
            removed = [index.pop(name) for name in names if name in index]
            if removed:
                self._save_index(index)
            for file in files:
                self.store.delete(file)
        return removed

    def forget_before(self, seq: int) -> list[HistoryFile]:
        """Delete the history files whose events all have a seq below ``seq``."""
        return self.remove(f.segment for f in self.files() if f.last_seq < seq)

    # ---------------------------------------------------------------- reading
    def files(self) -> list[HistoryFile]:
        """Every history file the index names, in sequence order."""
        return sorted(self._load_index().values(), key=lambda f: f.first_seq)

    def verify(self) -> list[Problem]:
        """Check every indexed file: present, its size and SHA-256, and that it decodes whole.

        Decoding checks the columns are there and the rows hold exactly the indexed seq
        range; in a sealed file it also authenticates every chunk read.
        """
        try:
            index = self._load_index()
        except HindsightError as exc:
            return [Problem(INDEX_FILE, None, exc.reason)]
        problems = []
        for entry in sorted(index.values(), key=lambda f: f.first_seq):
            problem = self._check(entry)
            if problem is not None:
                problems.append(problem)
        return problems

    def _check(self, entry: HistoryFile) -> Problem | None:
        reason = self.store.check(entry.file, entry.sha256, entry.size)
        if reason == "missing" and entry.segment not in self._load_index():
            return None  # removed since the index was read
        if reason is not None:
            return Problem(entry.file, None, reason)
        try:
            return _decode_check(self.store, entry)
        except HindsightError as exc:
            return Problem(entry.file, exc.offset, exc.reason)

    # ------------------------------------------------------------ index, lock
    def _load_index(self) -> dict[str, HistoryFile]:
        try:
            raw = (self.root / INDEX_FILE).read_bytes()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
            entries = [HistoryFile(**f) for f in doc["files"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"history index is malformed: {exc}", path=INDEX_FILE) from exc
        if doc.get("format") != INDEX_FORMAT:
            raise RepositoryError(
                f"history index format {doc.get('format')!r} is not supported by this "
                f"version (supports {INDEX_FORMAT}); upgrade Hindsight",
                path=INDEX_FILE,
            )
        for entry in entries:
            if not _SEGMENT_NAME.fullmatch(entry.segment) or entry.file != history_file_name(
                entry.segment
            ):
                raise CorruptionError(f"bad entry {entry.segment!r}", path=INDEX_FILE)
        return {e.segment: e for e in entries}

    def _save_index(self, index: dict[str, HistoryFile]) -> None:
        entries = sorted(index.values(), key=lambda f: f.first_seq)
        doc = {"format": INDEX_FORMAT, "files": [e._asdict() for e in entries]}
        atomic_write(self.root / INDEX_FILE, json.dumps(doc, indent=1).encode())

    def _sweep(self, index: dict[str, HistoryFile]) -> None:
        """Delete what crashes left: unindexed history files and temporary files."""
        indexed = {e.file.rpartition("/")[2] for e in index.values()}
        for path in (self.root / HISTORY_DIR).iterdir():
            name = path.name
            stray = bool(_HISTORY_NAME.fullmatch(name)) and name not in indexed
            if stray or (name.startswith(".") and name.endswith(".tmp")):
                path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``history/LOCK``: one export or remove at a time, across processes."""
        (self.root / HISTORY_DIR).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def history_row(event: ChangeEvent, segment: str) -> tuple[object, ...]:
    """One event as a row of HISTORY_SCHEMA; the after-image reduced to size, hash, blob."""
    meta = event.meta or {}
    after = event.after
    size: int | None
    digest: str | None
    blob: str | None
    if after is None:
        size, digest, blob = None, None, None
    elif isinstance(after, FileImage):
        size, digest, blob = after.size, after.sha256, after.blob
    else:
        size, digest, blob = len(after), hashlib.sha256(after).hexdigest(), None
    return (
        event.seq,
        event.source_ts,
        event.capture_ts,
        event.source.value,
        meta.get(META_DEPLOYMENT),
        event.namespace,
        event.key,
        event.op.value,
        size,
        digest,
        blob,
        event.txn or None,
        meta.get(META_OLD_PATH),
        segment,
    )


def history_batch(rows: list[tuple[object, ...]]) -> pa.RecordBatch:
    """Rows made by ``history_row`` as one record batch of HISTORY_SCHEMA."""
    columns = zip(*rows, strict=True)
    arrays = [
        pa.array(values, type=f.type) for values, f in zip(columns, HISTORY_SCHEMA, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=HISTORY_SCHEMA)


def _decode_check(store: ParquetStore, entry: HistoryFile) -> Problem | None:
    """Read every row group of ``entry``; a problem if columns or seqs are not as indexed."""
    expected = entry.first_seq
    for batch in store.batches(entry.file):
        missing = set(HISTORY_SCHEMA.names) - set(batch.schema.names)
        if missing:
            return Problem(entry.file, None, f"columns missing: {', '.join(sorted(missing))}")
        seqs = batch.column("seq").to_pylist()
        if seqs != list(range(expected, expected + len(seqs))):
            return Problem(entry.file, None, f"rows are not seq {expected}.. in order")
        expected += len(seqs)
    if expected != entry.last_seq + 1:
        return Problem(
            entry.file,
            None,
            f"holds seq {entry.first_seq}..{expected - 1}, the index says "
            f"{entry.first_seq}..{entry.last_seq}",
        )
    return None
