"""The segments of one journal as a process sees them: the manifest, the segment files, their
sparse indexes, and the codec that opens each (bound to the segment's own key when encrypted).

The writer keeps its catalog current as it appends, seals and drops; readers ``refresh`` theirs
from disk, and index the active segment's new frames as they read. Segments before the
manifest's ``first_seq`` were dropped and are never part of the catalog, even while a crash
has left their files behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from journal.codec import Codec
from journal.errors import CorruptionError, HindsightError, NotFound, RepositoryError
from journal.events import ChangeEvent
from journal.filekeys import SEGMENTS, FileKeys
from journal.framing import read_frame_at
from journal.manifest import Manifest, SegmentInfo
from journal.protocols import Store
from journal.pruning import DropReport, doomed_segments, drop_report, remove_segment_files
from journal.segments import (
    IndexEntry,
    SeqQuery,
    TimeQuery,
    decode_batch,
    decode_index,
    scan_segment_from,
)

__all__ = ["JOURNAL_DIR", "Catalog", "Segment"]

JOURNAL_DIR = "journal"
SEGMENT_GLOB = "[0-9]" * 20 + ".seg"  # other files in the directory are not segments


@dataclass
class Segment:
    """A segment file as this process knows it."""

    first_seq: int
    path: Path
    info: SegmentInfo | None = None  # set once sealed
    entries: list[IndexEntry] | None = None  # loaded lazily for sealed segments
    scanned_end: int = 0  # readers: where the next incremental scan starts
    created_us: int | None = None
    codec: Codec | None = None  # bound to the segment's own key when encrypted

    @property
    def rel(self) -> str:
        """Path relative to the repository."""
        return f"{JOURNAL_DIR}/{self.path.name}"

    @property
    def index_key(self) -> str:
        """Store key of its sparse index file."""
        return f"{JOURNAL_DIR}/{self.path.stem}.idx"


class Catalog:
    """The journal's segments in sequence order; see the module docstring."""

    def __init__(
        self,
        root: Path,
        store: Store,
        codec: Codec,
        mac_key: bytes | None,
        file_keys: FileKeys | None,
    ) -> None:
        self.root, self.dir = root, root / JOURNAL_DIR
        self.store, self.codec, self.mac_key, self.file_keys = store, codec, mac_key, file_keys
        self.segments: list[Segment] = []
        self.manifest = Manifest()

    @property
    def first_seq(self) -> int:
        """The first sequence number still stored."""
        return self.manifest.first_seq

    def refresh(self) -> None:
        """Re-read the manifest and the segment files."""
        manifest = Manifest.load(self.store, self.mac_key)
        known = {s.path.name: s for s in self.segments}
        sealed = {info.name: info for info in manifest.segments}
        segments = []
        for path in sorted(self.dir.glob(SEGMENT_GLOB)):
            if int(path.stem) < manifest.first_seq:
                continue  # left over from a drop cut short: no longer part of the journal
            seg = known.get(path.name) or Segment(int(path.stem), path)
            if path.name in sealed and seg.info is None:
                seg.info, seg.entries = sealed[path.name], None
            segments.append(seg)
        missing = sealed.keys() - {s.path.name for s in segments}
        for name in sorted(missing):
            info = sealed[name]
            segments.append(Segment(info.first_seq, self.dir / name, info))
        self.segments = sorted(segments, key=lambda s: s.first_seq)
        self.manifest = manifest

    # ------------------------------------------------------------------- codecs
    def writer_codec(self, first_seq: int) -> Codec:
        """The codec appending to a segment: its key is read, or created (durably) first."""
        if self.file_keys is None:
            return self.codec
        name = f"{first_seq:020d}"
        return self.codec.with_cipher(self.file_keys.writer_cipher(SEGMENTS, name))

    def codec_of(self, seg: Segment) -> Codec:
        """The codec reading ``seg``: its key file is read at the first frame that needs it."""
        if seg.codec is None:
            if self.file_keys is None:
                seg.codec = self.codec
            else:
                seg.codec = self.codec.with_cipher(self.file_keys.cipher(SEGMENTS, seg.path.stem))
        return seg.codec

    def codec_for(self, rel: str) -> Codec:
        """The codec that opens the frames of segment ``rel``."""
        for seg in self.segments:
            if seg.rel == rel:
                return self.codec_of(seg)
        path = self.root / rel
        return self.codec_of(Segment(int(path.stem), path))

    # ------------------------------------------------------------------ indexes
    def entries(self, seg: Segment, scan: bool) -> list[IndexEntry]:
        """The batches of ``seg``; ``scan``: first index what was appended since last time."""
        if seg.entries is None:
            seg.entries = self._load_index(seg) if seg.info is not None else []
        if seg.info is None and scan:
            self._scan_more(seg)
        return seg.entries

    def _load_index(self, seg: Segment) -> list[IndexEntry]:
        try:
            return decode_index(self.store.get(seg.index_key), seg.index_key)
        except NotFound:
            raise CorruptionError("sealed segment has no index file", path=seg.index_key) from None

    def _scan_more(self, seg: Segment) -> None:
        """Readers: index frames the writer appended since the last look."""
        assert seg.entries is not None
        try:
            scan = scan_segment_from(seg.path, seg.scanned_end, seg.created_us)
        except FileNotFoundError:
            return
        if scan.bad is not None and not scan.bad.torn:
            raise CorruptionError(scan.bad.reason, path=seg.rel, offset=scan.bad.offset)
        seg.entries.extend(scan.entries)
        seg.scanned_end, seg.created_us = scan.end, scan.created_us

    def all_entries(self, scan: bool) -> Iterator[IndexEntry]:
        """Every batch, sealed segments summarised by their manifest entry unless loaded."""
        for seg in self.segments:
            if seg.info is not None and seg.entries is None:
                i = seg.info
                yield IndexEntry(0, i.first_seq, i.event_count, i.min_ts, i.max_ts)
            else:
                yield from self.entries(seg, scan)

    # ------------------------------------------------------------------ reading
    def read(self, query: SeqQuery | TimeQuery, reader: bool) -> Iterator[list[ChangeEvent]]:
        """The batches ``query`` wants, in order; ``reader``: this is not the writer's view.

        A segment dropped before the read reached it is skipped (the read starts later); one
        dropped after the read returned events ends it with RepositoryError.
        """
        started = False
        for seg in list(self.segments):
            if seg.info is not None and not query.wants(seg.info):
                continue
            opened = self._open_for_read(seg, query, reader, started)
            if opened is not None:
                started = True
                yield from self._read_entries(seg, *opened)

    def _open_for_read(
        self, seg: Segment, query: SeqQuery | TimeQuery, reader: bool, started: bool
    ) -> tuple[BinaryIO, list[IndexEntry]] | None:
        try:
            entries = query.pick(self.entries(seg, reader))
            return (open(seg.path, "rb"), entries) if entries else None
        except (OSError, HindsightError) as exc:
            if not self._dropped(seg, reader):
                if isinstance(exc, FileNotFoundError):
                    raise CorruptionError("segment file is missing", path=seg.rel) from None
                raise
            if started:
                raise RepositoryError(
                    f"{seg.rel} was dropped while this read was in progress; the journal now "
                    f"starts at seq {self.first_seq}: read again from there"
                ) from None
            return None

    def _dropped(self, seg: Segment, reader: bool) -> bool:
        if reader:
            self.refresh()
        return seg.first_seq < self.first_seq

    def _read_entries(
        self, seg: Segment, f: BinaryIO, entries: list[IndexEntry]
    ) -> Iterator[list[ChangeEvent]]:
        codec = self.codec_of(seg)
        with f:
            for e in entries:
                payload = read_frame_at(f, e.offset, seg.rel)
                yield decode_batch(payload, codec, seg.rel, e.offset)

    # ----------------------------------------------------------------- dropping
    def drop(self, seq: int, dry_run: bool) -> DropReport:
        """Drop the sealed segments before ``seq`` in the order of ``journal.pruning``."""
        doomed = doomed_segments(self.manifest.segments, seq)
        if not doomed:
            return drop_report(self.dir, [], self.first_seq)
        first = doomed[-1].last_seq + 1
        report = drop_report(self.dir, doomed, first)
        if dry_run:
            return report
        manifest = Manifest(self.manifest.segments[len(doomed) :], first)
        manifest.save(self.store, self.mac_key)
        self.manifest = manifest
        self.segments = [s for s in self.segments if s.first_seq >= first]
        remove_segment_files(self.root, self.dir, report.segments)
        return report
