"""Dropping the oldest sealed segments of the journal, in an order a crash cannot break.

1. Write the manifest without them and with ``first_seq``, the first sequence number still
   held. From here on the segments are gone for every reader.
2. Destroy their key files (crypto-shredding; only encrypted journals have them).
3. Unlink their ``.seg`` and ``.idx`` files, then fsync the directory.

A crash after step 1 leaves files below ``first_seq``: readers ignore them and the next writer
open removes them (``remove_leftovers``), key files first.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from journal.errors import RepositoryError
from journal.filekeys import SEGMENTS, key_names, shred_key, sync_key_dir
from journal.fsutil import fsync_dir, remove
from journal.manifest import SegmentInfo

__all__ = [
    "DropReport",
    "doomed_segments",
    "drop_report",
    "remove_leftovers",
    "remove_segment_files",
]

_SEQ_DIGITS = 20


class DropReport(NamedTuple):
    """What ``SegmentLog.drop_before`` removed (or, in a dry run, would remove)."""

    segments: tuple[str, ...]
    """Names of the segment files dropped, oldest first."""
    events: int
    """Events in them."""
    bytes: int
    """Bytes of their segment and index files."""
    first_seq: int
    """The first sequence number the journal holds afterwards."""


def doomed_segments(sealed: Sequence[SegmentInfo], seq: int) -> list[SegmentInfo]:
    """The sealed segments holding only events before ``seq``: always a prefix."""
    doomed = []
    for info in sealed:
        if info.last_seq >= seq:
            break
        doomed.append(info)
    return doomed


def drop_report(journal_dir: Path, doomed: Sequence[SegmentInfo], first_seq: int) -> DropReport:
    """The report of dropping ``doomed``, after which the journal starts at ``first_seq``."""
    size = sum(info.size + _size(journal_dir / _index_name(info.name)) for info in doomed)
    events = sum(info.event_count for info in doomed)
    return DropReport(tuple(info.name for info in doomed), events, size, first_seq)


def remove_segment_files(root: Path, journal_dir: Path, names: Sequence[str]) -> None:
    """Steps 2 and 3 for the segment files ``names``: shred their keys, unlink, fsync."""
    try:
        for name in names:
            shred_key(root, SEGMENTS, Path(name).stem)
        sync_key_dir(root, SEGMENTS)
        for name in names:
            remove(journal_dir / name)
            remove(journal_dir / _index_name(name))
        fsync_dir(journal_dir)
    except OSError as exc:
        raise RepositoryError(
            f"dropped segments from the manifest but could not remove their files "
            f"({exc.filename}: {exc.strerror}); the next writer open removes them"
        ) from exc


def remove_leftovers(root: Path, journal_dir: Path, first_seq: int) -> list[str]:
    """Files of segments before ``first_seq`` (a drop cut short by a crash): remove them.

    Returns the names of the segment, index and key files found, for the writer's notes.
    """
    files = [
        p.name
        for p in journal_dir.iterdir()
        if p.suffix in (".seg", ".idx") and _seq_of(p.stem) < first_seq
    ]
    keys = [k for k in key_names(root, SEGMENTS) if _seq_of(k) < first_seq]
    segs = sorted({f"{Path(n).stem}.seg" for n in files} | {f"{k}.seg" for k in keys})
    if segs:
        remove_segment_files(root, journal_dir, segs)
    return sorted(files) + [f"{k}.key" for k in keys]


def _seq_of(stem: str) -> int:
    if len(stem) != _SEQ_DIGITS or not stem.isdigit():
        return 2**64  # not a segment's file: never a leftover
    return int(stem)


def _index_name(segment_name: str) -> str:
    return f"{Path(segment_name).stem}.idx"


def _size(path: Path) -> int:
    with contextlib.suppress(FileNotFoundError):
        return os.stat(path).st_size
    return 0
