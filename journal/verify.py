"""Full verification of the journal: every frame, every tag, every hash, every sequence number.

Verification never stops at the first problem: it reports each damaged frame with its file
and offset, and keeps going, so one run tells the operator everything that is wrong. The
journal is checked from its ``first_seq``: segments dropped before it are not missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from journal.errors import AuthError, CorruptionError, HindsightError
from journal.framing import BadFrame, Frame
from journal.fsutil import file_sha256
from journal.integrity import Problem
from journal.log import SegmentLog
from journal.manifest import MANIFEST_KEY, Manifest, SegmentInfo
from journal.segments import (
    KIND_EVENTS,
    BatchHeader,
    IndexEntry,
    decode_batch,
    decode_index,
    iter_frames,
)

__all__ = ["JournalReport", "verify_journal"]

Progress = Callable[[int, int], None]


@dataclass
class JournalReport:
    """What ``verify_journal`` checked and found."""

    segments: int = 0
    frames: int = 0
    events: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is damaged."""
        return not self.problems


def verify_journal(log: SegmentLog, progress: Progress | None = None) -> JournalReport:
    """Read and check every segment of ``log``; ``progress(done, total)`` is told bytes."""
    report = JournalReport()
    try:
        Manifest.load(log.store, log.mac_key)
    except CorruptionError as exc:
        report.problems.append(Problem(MANIFEST_KEY, None, str(exc)))
    files = log.segment_files()
    total = sum(_size(log.dir.parent / rel) for rel, _ in files)
    expected_seq = log.first_seq  # a dropped prefix is not missing
    for i, (rel, info) in enumerate(files):
        path = log.dir.parent / rel
        report.segments += 1
        if not path.exists():
            report.problems.append(Problem(rel, None, "segment file is missing"))
            expected_seq = info.last_seq + 1 if info else expected_seq
            continue
        active_tail = info is None and i == len(files) - 1
        checker = _SegmentCheck(log, rel, path, expected_seq, report, active_tail)
        expected_seq = checker.run(info)
        report.bytes += _size(path)
        if progress:
            progress(report.bytes, total)
    return report


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class _SegmentCheck:
    """Checks one segment file; appends to the shared report."""

    def __init__(
        self,
        log: SegmentLog,
        rel: str,
        path: Path,
        expected_seq: int,
        report: JournalReport,
        active_tail: bool,
    ) -> None:
        self.log, self.rel, self.path, self.report = log, rel, path, report
        self.expected_seq, self.active_tail = expected_seq, active_tail
        self.codec = log.codec_for(rel)
        self.entries: list[IndexEntry] = []
        self.after_damage = False  # a damaged frame hides its events: no gap report for it

    def problem(self, offset: int | None, reason: str) -> None:
        self.report.problems.append(Problem(self.rel, offset, reason))

    def run(self, info: SegmentInfo | None) -> int:
        for item in iter_frames(self.path, 0, _size(self.path)):
            if isinstance(item, BadFrame):
                self._bad(item)
            else:
                self._frame(item)
        if info is not None:
            self._check_sealed(info)
        return self.expected_seq

    def _bad(self, bad: BadFrame) -> None:
        self.after_damage = True
        if bad.torn and self.active_tail:
            self.report.notes.append(
                f"{self.rel} @ {bad.offset}: unfinished append at the tail of the active "
                "segment (in progress, or torn by a crash; the writer truncates it on open)"
            )
        else:
            self.problem(bad.offset, bad.reason)

    def _frame(self, frame: Frame) -> None:
        self.report.frames += 1
        try:
            head = BatchHeader.unpack(frame.payload)
            if head.kind != KIND_EVENTS:
                return
            events = decode_batch(frame.payload, self.codec, self.rel, frame.offset)
        except (CorruptionError, AuthError) as exc:
            self.problem(frame.offset, _reason(exc))
            self.after_damage = True
            return
        if head.first_seq != self.expected_seq and not self.after_damage:
            self.problem(
                frame.offset, f"sequence gap: expected {self.expected_seq}, found {head.first_seq}"
            )
        self.entries.append(
            IndexEntry(frame.offset, head.first_seq, head.event_count, head.min_ts, head.max_ts)
        )
        self.report.events += len(events)
        self.after_damage = False
        self.expected_seq = head.first_seq + head.event_count

    def _check_sealed(self, info: SegmentInfo) -> None:
        if file_sha256(self.path).hex() != info.sha256:
            self.problem(None, "SHA-256 does not match the manifest (the sealed file changed)")
        idx_rel = self.rel[: -len(".seg")] + ".idx"
        try:
            index = decode_index(self.log.store.get(idx_rel), idx_rel)
        except HindsightError as exc:
            self.report.problems.append(Problem(idx_rel, None, _reason(exc)))
            return
        if index != self.entries and not any(p.path == self.rel for p in self.report.problems):
            self.report.problems.append(Problem(idx_rel, None, "index disagrees with the segment"))
        self.expected_seq = info.last_seq + 1


def _reason(exc: HindsightError) -> str:
    return exc.reason
