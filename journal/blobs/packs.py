"""Pack files and their index files: layout, writing, scanning, recovery and sealing.

A pack is a file of frames: one pack header frame, then one frame per stored object. The open
pack (``open/<id>.pack``) is appended to; a full one is *sealed*, in this order, so that a
crash at any point leaves a state ``BlobStore`` opens cleanly without losing a flushed object:

1. fsync the pack (everything in it is now durable);
2. write ``index/<id>.idx`` atomically (temp file, fsync, rename, fsync ``index/``);
3. chmod the pack 0444 and rename it to ``packs/<id>.pack``; fsync ``packs/`` and ``open/``.

On open, a pack under ``open/`` with an index file was interrupted between steps 2 and 3 and
only needs the move finished; one without an index is the open pack and is recovered by
scanning its frames (a torn tail is cut off). A sealed pack without an index file (copied
without it, or its index damaged) is indexed by scanning it.

Packs are deleted (by garbage collection) in this order:

1. ``collect.json`` names them (atomic write): from here on they are gone for every reader,
   which skips them, and the next writable open finishes what a crash interrupted;
2. per pack, its key file is destroyed (crypto-shredding), then the pack and its index are
   unlinked; the directories are fsynced;
3. ``collect.json`` is removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from journal.blobs.objects import bare_reason, parse_header
from journal.errors import CorruptionError, RepositoryError
from journal.filekeys import PACKS, shred_key, sync_key_dir
from journal.framing import BadFrame, Frame, encode_frame, read_frame_at, scan_frames
from journal.fsutil import atomic_write, fsync_dir, remove

__all__ = [
    "INDEX_ENTRY",
    "INDEX_HEADER",
    "PACK_HEADER",
    "IndexEntry",
    "PackIndex",
    "PackLayout",
    "PackObject",
    "PackWriter",
    "Recovered",
    "check_pack_header",
    "delete_packs",
    "finish_move",
    "iter_pack",
    "new_pack_id",
    "read_index",
    "read_intent",
    "recover_open_pack",
    "scan_entries",
    "seal_pack",
]

PACK_MAGIC, PACK_FORMAT = b"HSPK", 1
PACK_HEADER = struct.Struct("<4sHH16s")
INDEX_MAGIC, INDEX_FORMAT = b"HSIX", 1
INDEX_HEADER = struct.Struct("<4sHH16sQ32sI")
INDEX_ENTRY = struct.Struct("<32sBQII")
ENTRIES_PER_FRAME = 4096
INTENT_NAME = "collect.json"
INTENT_VERSION = 1
_PACK_ID = re.compile(r"[0-9a-f]{32}")
_BLOCK = 1024 * 1024


class IndexEntry(NamedTuple):
    """Where one object lives in its pack: its frame's offset and length, and its raw size."""

    id: bytes
    kind: int
    offset: int
    length: int
    raw_len: int


class PackObject(NamedTuple):
    """An object frame found while scanning a pack."""

    entry: IndexEntry
    payload: bytes


class PackIndex(NamedTuple):
    """The parsed contents of an index file."""

    pack_id: str
    size: int
    sha256: bytes
    entries: list[IndexEntry]


class Recovered(NamedTuple):
    """What scanning an open pack found; ``note`` describes a torn tail that was cut off."""

    entries: list[IndexEntry]
    end: int
    note: str | None


@dataclass(frozen=True, slots=True)
class PackLayout:
    """Where the files live: ``base`` (e.g. ``<repo>/blobs``) inside repository ``root``."""

    root: Path
    base: Path

    @property
    def open_dir(self) -> Path:
        """The open pack's directory."""
        return self.base / "open"

    @property
    def packs_dir(self) -> Path:
        """Sealed packs' directory."""
        return self.base / "packs"

    @property
    def index_dir(self) -> Path:
        """Index files' directory."""
        return self.base / "index"

    def open_path(self, pack_id: str) -> Path:
        """Path of ``pack_id`` while it is open."""
        return self.open_dir / f"{pack_id}.pack"

    def sealed_path(self, pack_id: str) -> Path:
        """Path of ``pack_id`` once sealed."""
        return self.packs_dir / f"{pack_id}.pack"

    def index_path(self, pack_id: str) -> Path:
        """Path of the index file of ``pack_id``."""
        return self.index_dir / f"{pack_id}.idx"

    def rel(self, path: Path) -> str:
        """``path`` relative to the repository root, as problems and errors name it."""
        return path.relative_to(self.root).as_posix()

    def ids_in(self, directory: Path, suffix: str) -> set[str]:
        """Pack ids of the files named ``<id><suffix>`` in ``directory`` (temp files skipped)."""
        if not directory.is_dir():
            return set()
        names = (p.name.removesuffix(suffix) for p in directory.iterdir() if p.suffix == suffix)
        return {n for n in names if _PACK_ID.fullmatch(n)}


def new_pack_id() -> str:
    """A random 128-bit pack id, as hex."""
    return secrets.token_hex(16)


def _pack_header_problem(payload: bytes, pack_id: str) -> str | None:
    if len(payload) != PACK_HEADER.size:
        return "first frame is not a pack header"
    magic, fmt, _, raw_id = PACK_HEADER.unpack(payload)
    if magic != PACK_MAGIC:
        return "first frame is not a pack header"
    if fmt != PACK_FORMAT:
        return f"pack format {fmt} is not supported (this version reads {PACK_FORMAT})"
    if raw_id.hex() != pack_id:
        return f"pack header names pack {raw_id.hex()}, not {pack_id}"
    return None


def iter_pack(f: BinaryIO, pack_id: str, rel: str) -> Iterator[PackObject | BadFrame]:
    """Every object of a pack after its header frame; damaged places come as ``BadFrame``."""
    first = True
    for item in scan_frames(f):
        if first and isinstance(item, Frame):
            problem = _pack_header_problem(item.payload, pack_id)
            if problem:
                yield BadFrame(item.offset, item.end, problem, torn=False)
        elif isinstance(item, Frame):
            yield _object_at(item, rel)
        else:
            yield item
        first = False


def _object_at(frame: Frame, rel: str) -> PackObject | BadFrame:
    try:
        h = parse_header(frame.payload, rel, frame.offset)
    except CorruptionError as exc:
        return BadFrame(frame.offset, frame.end, bare_reason(exc, rel), torn=False)
    entry = IndexEntry(h.id, h.kind, frame.offset, frame.end - frame.offset, h.raw_len)
    return PackObject(entry, frame.payload)


def scan_entries(path: Path, pack_id: str, rel: str) -> list[IndexEntry]:
    """Entries of every intact object frame of a pack, for a pack whose index is unusable."""
    with open(path, "rb") as f:
        return [i.entry for i in iter_pack(f, pack_id, rel) if isinstance(i, PackObject)]


def check_pack_header(f: BinaryIO, pack_id: str, rel: str) -> None:
    """Raise CorruptionError unless ``f`` starts with the header frame of ``pack_id``."""
    problem = _pack_header_problem(read_frame_at(f, 0, rel), pack_id)
    if problem:
        raise CorruptionError(problem, path=rel, offset=0)


class PackWriter:
    """Appends object frames to the open pack, keeping its entries and running SHA-256."""

    def __init__(self, path: Path, pack_id: str, rel: str, entries: list[IndexEntry]) -> None:
        self.path, self.pack_id, self.rel, self.entries = path, pack_id, rel, entries
        self._sha = hashlib.sha256()
        self.size = 0
        try:
            self._f = open(path, "ab", buffering=0)  # noqa: SIM115 -- lives as long as the writer
        except OSError as exc:
            raise RepositoryError(f"cannot open {rel} for appending: {exc.strerror}") from exc

    @classmethod
    def create(cls, layout: PackLayout, pack_id: str) -> PackWriter:
        """Start a new open pack: header frame written, file and directory fsynced."""
        path = layout.open_path(pack_id)
        writer = cls(path, pack_id, layout.rel(path), [])
        try:
            header = PACK_HEADER.pack(PACK_MAGIC, PACK_FORMAT, 0, bytes.fromhex(pack_id))
            writer._write(encode_frame(header))
            writer.sync()
            fsync_dir(layout.open_dir)
        except BaseException:
            writer.close()
            raise
        return writer

    @classmethod
    def resume(cls, layout: PackLayout, pack_id: str, entries: list[IndexEntry]) -> PackWriter:
        """Continue a recovered open pack; hashes what it already holds."""
        path = layout.open_path(pack_id)
        writer = cls(path, pack_id, layout.rel(path), entries)
        with open(path, "rb") as f:
            while block := f.read(_BLOCK):
                writer._sha.update(block)
                writer.size += len(block)
        return writer

    def append(self, kind: int, raw_id: bytes, payload: bytes, raw_len: int) -> IndexEntry:
        """Append one object frame; it is durable after the next ``sync``."""
        frame = encode_frame(payload)
        entry = IndexEntry(raw_id, kind, self.size, len(frame), raw_len)
        self._write(frame)
        self.entries.append(entry)
        return entry

    def _write(self, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[self._f.write(view) or 0 :]
        except OSError as exc:
            raise RepositoryError(f"cannot append to {self.rel}: {exc.strerror}") from exc
        self._sha.update(data)
        self.size += len(data)

    def sync(self) -> None:
        """fsync the pack."""
        try:
            os.fsync(self._f.fileno())
        except OSError as exc:
            raise RepositoryError(f"cannot fsync {self.rel}: {exc.strerror}") from exc

    def close(self) -> None:
        """Close the file (without fsync)."""
        self._f.close()

    @property
    def sha256(self) -> bytes:
        """SHA-256 of everything written so far."""
        return self._sha.digest()


def recover_open_pack(layout: PackLayout, pack_id: str, writable: bool) -> Recovered:
    """Index an open pack after a restart; cut off a torn tail when ``writable``.

    A damaged frame that valid frames follow is not a crash artefact: CorruptionError.
    """
    path = layout.open_path(pack_id)
    rel = layout.rel(path)
    entries, torn = [], None
    with open(path, "rb") as f:
        for item in iter_pack(f, pack_id, rel):
            if isinstance(item, BadFrame) and not item.torn:
                raise CorruptionError(
                    f"open pack is damaged: {item.reason}", path=rel, offset=item.offset
                )
            if isinstance(item, BadFrame):
                torn = item
            else:
                entries.append(item.entry)
        size = f.seek(0, 2)
    if torn is None:
        return Recovered(entries, size, None)
    done = "cut off" if writable else "ignored (read-only)"
    note = (
        f"{rel}: {done} a torn tail of {size - torn.offset} bytes at offset {torn.offset} "
        f"({torn.reason}): an append cut short by a crash, never flushed data"
    )
    if writable:
        with open(path, "r+b") as f:
            f.truncate(torn.offset)
            os.fsync(f.fileno())
    return Recovered(entries, torn.offset, note)


def encode_index(pack_id: str, size: int, sha256: bytes, entries: list[IndexEntry]) -> bytes:
    """The bytes of an index file: a header frame, then frames of entries."""
    head = INDEX_HEADER.pack(
        INDEX_MAGIC, INDEX_FORMAT, 0, bytes.fromhex(pack_id), size, sha256, len(entries)
    )
    parts = [encode_frame(head)]
    for i in range(0, len(entries), ENTRIES_PER_FRAME):
        batch = entries[i : i + ENTRIES_PER_FRAME]
        parts.append(encode_frame(b"".join(INDEX_ENTRY.pack(*e) for e in batch)))
    return b"".join(parts)


def read_index(path: Path, pack_id: str, rel: str) -> PackIndex:
    """Parse and check an index file; CorruptionError names the first damaged place."""
    with open(path, "rb") as f:
        frames = []
        for item in scan_frames(f):
            if isinstance(item, BadFrame):
                raise CorruptionError(
                    f"index file is damaged: {item.reason}", path=rel, offset=item.offset
                )
            frames.append(item)
    if not frames or len(frames[0].payload) != INDEX_HEADER.size:
        raise CorruptionError("index file has no header frame", path=rel, offset=0)
    magic, fmt, _, raw_id, size, sha, count = INDEX_HEADER.unpack(frames[0].payload)
    if magic != INDEX_MAGIC or fmt != INDEX_FORMAT or raw_id.hex() != pack_id:
        raise CorruptionError(
            f"not a format {INDEX_FORMAT} index of pack {pack_id}", path=rel, offset=0
        )
    entries: list[IndexEntry] = []
    for frame in frames[1:]:
        if len(frame.payload) % INDEX_ENTRY.size:
            raise CorruptionError(
                "index frame holds a partial entry", path=rel, offset=frame.offset
            )
        entries.extend(IndexEntry(*e) for e in INDEX_ENTRY.iter_unpack(frame.payload))
    if len(entries) != count:
        raise CorruptionError(
            f"index lists {len(entries)} entries, its header {count}", path=rel, offset=0
        )
    return PackIndex(pack_id, size, sha, entries)


def seal_pack(layout: PackLayout, writer: PackWriter) -> Path:
    """Seal the open pack in the crash-safe order of this module's docstring."""
    writer.sync()
    writer.close()
    index = encode_index(writer.pack_id, writer.size, writer.sha256, writer.entries)
    try:
        atomic_write(layout.index_path(writer.pack_id), index)
    except OSError as exc:
        raise RepositoryError(f"cannot write the index of {writer.rel}: {exc.strerror}") from exc
    return finish_move(layout, writer.pack_id)


def finish_move(layout: PackLayout, pack_id: str) -> Path:
    """Make an indexed open pack read-only and move it to ``packs/``."""
    src, dst = layout.open_path(pack_id), layout.sealed_path(pack_id)
    try:
        os.chmod(src, 0o444)
        os.replace(src, dst)
        fsync_dir(dst.parent)
        fsync_dir(src.parent)
    except OSError as exc:
        raise RepositoryError(f"cannot seal {layout.rel(src)}: {exc.strerror}") from exc
    return dst


def _intent_path(layout: PackLayout) -> Path:
    return layout.base / INTENT_NAME


def read_intent(layout: PackLayout) -> set[str]:
    """The packs an interrupted collect was deleting (empty when none)."""
    path = _intent_path(layout)
    try:
        doc = json.loads(path.read_bytes())
        if doc["version"] != INTENT_VERSION:
            raise ValueError(f"unknown version {doc['version']!r}")
        doomed = {str(p) for p in doc["delete"]}
        if not all(_PACK_ID.fullmatch(p) for p in doomed):
            raise ValueError("an entry is not a pack id")
        return doomed
    except FileNotFoundError:
        return set()
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptionError(
            f"{INTENT_NAME} is malformed ({exc}): it names the packs an interrupted collect "
            'was deleting; repair it ({"version": 1, "delete": [pack ids]}) and open again',
            path=layout.rel(path),
        ) from exc


def delete_packs(layout: PackLayout, pack_ids: Iterable[str]) -> None:
    """Delete packs in the crash-safe order of this module's docstring."""
    doomed = sorted(pack_ids)
    path = _intent_path(layout)
    try:
        atomic_write(path, json.dumps({"version": INTENT_VERSION, "delete": doomed}).encode())
        _remove_files(layout, doomed)
        remove(path)
        fsync_dir(layout.base)
    except OSError as exc:
        raise RepositoryError(
            f"cannot delete packs ({exc.filename}: {exc.strerror}); they are listed in "
            f"{layout.rel(path)}, and the next writable open finishes deleting them"
        ) from exc


def _remove_files(layout: PackLayout, doomed: list[str]) -> None:
    for pid in doomed:
        shred_key(layout.root, PACKS, pid)
        remove(layout.sealed_path(pid))
        remove(layout.open_path(pid))
        remove(layout.index_path(pid))
    sync_key_dir(layout.root, PACKS)
    for d in (layout.packs_dir, layout.open_dir, layout.index_dir):
        fsync_dir(d)
