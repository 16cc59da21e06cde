"""The packs of one store as this process knows them: where each object is, the open pack,
appends and seals, and, on open, the recovery of every state a crash can leave.

Appends, seals and every change to the map happen under ``lock``; a read takes it only to
look up an object and take a handle on its pack, since the open pack may be renamed when
sealed and a collect may move an object and delete its old pack. Read handles stay open
(``MAX_READERS`` at most, least recently used closed first) and are read with ``pread``, so
reads from many threads neither open a file per object nor share a file position; a handle
is closed only once no read uses it. Objects that lie next to each other in a pack, as a
file's chunks mostly do, are read with one ``pread`` (``read_many``).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, NamedTuple

from journal.blobs.objects import (
    ObjectCodec,
    StoreCodecs,
    checked_by_decoding,
    decode_object,
    seal_object,
)
from journal.blobs.packs import (
    IndexEntry,
    PackLayout,
    PackWriter,
    check_pack_header,
    delete_packs,
    finish_move,
    new_pack_id,
    read_index,
    read_intent,
    recover_open_pack,
    scan_entries,
    seal_pack,
)
from journal.blobs.verify import verify_packs
from journal.errors import AuthError, CorruptionError, NotFound, RepositoryError
from journal.framing import ENVELOPE_SIZE, frame_in, read_frame_at
from journal.integrity import Problem

__all__ = ["MAX_READERS", "Loc", "PackSet", "open_pack"]

MAX_READERS = 64  # pack files kept open for reads
RUN_BYTES = 4 * 1024 * 1024  # adjacent objects read with one pread, up to this many bytes


class Loc(NamedTuple):
    """Where the copy of an object that reads use lives."""

    pack_id: str
    kind: int
    offset: int
    length: int
    raw_len: int


class PackSet:
    """The packs under ``layout``, loaded (and recovered when ``writable``) on creation."""

    def __init__(
        self, layout: PackLayout, codecs: StoreCodecs, writable: bool, pack_max_bytes: int
    ) -> None:
        self.layout, self.codecs, self.writable = layout, codecs, writable
        self.pack_max_bytes = pack_max_bytes
        self.index: dict[bytes, Loc] = {}
        self.paths: dict[str, Path] = {}
        self.sealed: set[str] = set()
        self.notes: list[str] = []
        self.doomed: set[str] = set()  # read-only: packs an interrupted collect was deleting
        self.writer: PackWriter | None = None
        self.lock = threading.Lock()
        self._readers: OrderedDict[str, _Reader] = OrderedDict()  # under ``lock``
        self._load()

    # --- opening ------------------------------------------------------------------------

    def _load(self) -> None:
        lay = self.layout
        if self.writable:
            for d in (lay.open_dir, lay.packs_dir, lay.index_dir):
                d.mkdir(parents=True, exist_ok=True)
        self.doomed = doomed = read_intent(lay)
        if doomed and self.writable:
            delete_packs(lay, doomed)
            self.notes.append(f"finished deleting {len(doomed)} packs of an interrupted collect")
            self.doomed = set()
        indexed = lay.ids_in(lay.index_dir, ".idx") - doomed
        sealed = lay.ids_in(lay.packs_dir, ".pack") - doomed
        opened = lay.ids_in(lay.open_dir, ".pack") - doomed
        for pid in sorted(opened & indexed):
            self.paths[pid] = self._finish_interrupted_seal(pid)
        for pid in sorted(sealed - opened):
            self.paths[pid] = lay.sealed_path(pid)
        for pid in sorted(self.paths):
            self._load_sealed(pid, pid in indexed)
        for pid in sorted(indexed - sealed - opened):
            rel = lay.rel(lay.index_path(pid))
            self.notes.append(f"{rel}: its pack is missing; its chunks are unavailable")
        self._recover_open(sorted(opened - indexed))

    def _finish_interrupted_seal(self, pack_id: str) -> Path:
        """A crash fell between writing the index and moving the pack: finish the move."""
        if not self.writable:
            return self.layout.open_path(pack_id)
        self.notes.append(f"finished sealing pack {pack_id}, interrupted by a crash")
        return finish_move(self.layout, pack_id)

    def _load_sealed(self, pack_id: str, has_index: bool) -> None:
        lay, path = self.layout, self.paths[pack_id]
        self.sealed.add(pack_id)
        if has_index:
            idx_path = lay.index_path(pack_id)
            try:
                self._add(pack_id, read_index(idx_path, pack_id, lay.rel(idx_path)).entries)
                return
            except CorruptionError as exc:
                self.notes.append(f"{exc}; indexed {lay.rel(path)} by scanning it")
        else:
            self.notes.append(f"{lay.rel(path)} has no index file; indexed by scanning")
        self._add(pack_id, scan_entries(path, pack_id, lay.rel(path)))

    def _recover_open(self, pack_ids: list[str]) -> None:
        writers = []
        for pid in pack_ids:
            rec = recover_open_pack(self.layout, pid, self.writable)
            if rec.note:
                self.notes.append(rec.note)
            path = self.layout.open_path(pid)
            if rec.end == 0:
                # Created but not even its header frame survived: nothing to keep.
                if self.writable:
                    path.unlink()
                continue
            self.paths[pid] = path
            self._add(pid, rec.entries)
            if self.writable:
                writers.append(PackWriter.resume(self.layout, pid, rec.entries))
        # This code keeps one pack open; more can only come from outside (a directory copied
        # together from several stores), so all but one are sealed.
        for extra in writers[:-1]:
            self.paths[extra.pack_id] = seal_pack(self.layout, extra)
            self.sealed.add(extra.pack_id)
        self.writer = writers[-1] if writers else None

    def _add(self, pack_id: str, entries: list[IndexEntry]) -> None:
        for e in entries:
            self.index.setdefault(e.id, Loc(pack_id, e.kind, e.offset, e.length, e.raw_len))

    # --- writing ------------------------------------------------------------------------

    def store(
        self, oc: ObjectCodec, kind: int, raw_id: bytes, zflag: int, data: bytes, raw_len: int
    ) -> None:
        """Append a compressed object (``zflag``, ``data``) unless it is stored already.

        It is encrypted here, under the lock: only now is the pack it goes to, and so its
        key, known.
        """
        with self.lock:
            if raw_id not in self.index:
                codec = self.codecs.bind_for_write(oc, self._open_writer().pack_id).codec
                payload = seal_object(codec, kind, raw_id, zflag, data, raw_len)
                self._append(kind, raw_id, payload, raw_len)

    def copy_in(self, src: str, entries: list[IndexEntry]) -> None:
        """Copy objects of pack ``src`` to the open pack (re-encrypted under its key), and
        point the map at the copies."""
        path = self.paths[src]
        rel = self.layout.rel(path)
        with open_pack(path, rel) as f:
            for e in entries:
                payload = read_frame_at(f, e.offset, rel)
                with self.lock:
                    dst = self._open_writer().pack_id
                    moved = self.codecs.reseal(payload, src, dst, rel, e.offset)
                    self._append(e.kind, e.id, moved, e.raw_len)

    def _open_writer(self) -> PackWriter:
        if self.writer is None:
            self.writer = PackWriter.create(self.layout, new_pack_id())
            self.paths[self.writer.pack_id] = self.writer.path
        return self.writer

    def _append(self, kind: int, raw_id: bytes, payload: bytes, raw_len: int) -> None:
        writer = self._open_writer()
        entry = writer.append(kind, raw_id, payload, raw_len)
        self.index[raw_id] = Loc(writer.pack_id, kind, entry.offset, entry.length, raw_len)
        if writer.size >= self.pack_max_bytes:
            self.seal_locked()

    def flush(self) -> None:
        """fsync the open pack."""
        with self.lock:
            if self.writer is not None:
                self.writer.sync()

    def seal_locked(self) -> None:
        """Seal the open pack (the caller holds ``lock``)."""
        if self.writer is None:
            return
        pid = self.writer.pack_id
        self.paths[pid] = seal_pack(self.layout, self.writer)
        self.sealed.add(pid)
        self.writer = None

    def close(self) -> None:
        """fsync and close the open pack (it stays open on disk) and the read handles."""
        with self.lock:
            if self.writer is not None:
                self.writer.sync()
                self.writer.close()
                self.writer = None
            for pack_id in list(self._readers):
                self._drop_reader(pack_id)

    # --- reading ------------------------------------------------------------------------

    def read(self, raw_id: bytes) -> bytes:
        """The body of a stored object, checked against its length and id."""
        return next(self.read_many([raw_id]))

    def read_many(self, raw_ids: Sequence[bytes]) -> Iterator[bytes]:
        """The bodies of stored objects in order, each as ``read`` gives it; a run of them
        lying next to each other in one pack is read at once (``RUN_BYTES`` at most)."""
        done = 0
        while done < len(raw_ids):
            with self.lock:  # a collect may move objects: locations and handle must agree
                locs = self._run(raw_ids, done)
                reader = self._reader(locs[0].pack_id)
                reader.users += 1
            start = locs[0].offset
            try:
                buf = reader.pread(start, sum(loc.length for loc in locs))
            finally:
                with self.lock:
                    reader.release()
            for raw_id, loc in zip(raw_ids[done:], locs, strict=False):
                yield self._decoded(raw_id, loc, buf, start, reader.rel)
            done += len(locs)

    def _run(self, raw_ids: Sequence[bytes], start: int) -> list[Loc]:
        """Where the objects from ``start`` on are, as far as they follow each other in one
        pack; the caller holds ``lock``."""
        locs: list[Loc] = []
        end = size = 0
        for raw_id in raw_ids[start:]:
            loc = self.index.get(raw_id)
            if loc is None:
                if locs:
                    break  # read what comes before it first
                raise NotFound(f"object {raw_id.hex()} was deleted by a collect while being read")
            if locs and (loc.pack_id != locs[0].pack_id or loc.offset != end):
                break
            if locs and size + loc.length > RUN_BYTES:
                break
            locs.append(loc)
            end, size = loc.offset + loc.length, size + loc.length
        return locs

    def _decoded(self, raw_id: bytes, loc: Loc, buf: bytes, start: int, rel: str) -> bytes:
        """The body of the object at ``loc``, whose frame is in ``buf`` (read from ``start``).

        The payload's checksum is computed only when decoding would not check every byte
        (``checked_by_decoding``), or when decoding fails: damage is then reported as a
        damaged frame, not as whatever decoding made of it.
        """
        pos = loc.offset - start
        payload = frame_in(buf, pos, rel, start, payload_crc=False)
        if not checked_by_decoding(payload):
            frame_in(buf, pos, rel, start)  # raises on a damaged payload
        if ENVELOPE_SIZE + len(payload) != loc.length:
            msg = f"the index says {loc.length} bytes, the frame is {ENVELOPE_SIZE + len(payload)}"
            raise CorruptionError(msg, path=rel, offset=loc.offset)
        try:
            header, body = decode_object(self.codecs, payload, rel, loc.offset, loc.pack_id)
        except (CorruptionError, AuthError):
            frame_in(buf, pos, rel, start)  # raises on a damaged payload
            raise
        if header.id != raw_id or header.kind != loc.kind:
            frame_in(buf, pos, rel, start)
            msg = f"the index points here for {raw_id.hex()}, but the frame holds another object"
            raise CorruptionError(msg, path=rel, offset=loc.offset)
        return bytes(body)  # a copy only when the body was stored as it is

    def _reader(self, pack_id: str) -> _Reader:
        """The read handle of a pack, opened (and its header checked) on first use; the
        caller holds ``lock``."""
        reader = self._readers.get(pack_id)
        if reader is not None:
            self._readers.move_to_end(pack_id)
            return reader
        path = self.paths[pack_id]
        rel = self.layout.rel(path)
        with open_pack(path, rel) as f:
            check_pack_header(f, pack_id, rel)
            fd = os.dup(f.fileno())
        reader = self._readers[pack_id] = _Reader(fd, rel)
        if len(self._readers) > MAX_READERS:
            self._readers.popitem(last=False)[1].retire()
        return reader

    def _drop_reader(self, pack_id: str) -> None:
        reader = self._readers.pop(pack_id, None)
        if reader is not None:
            reader.retire()

    def entries_of(self, pack_id: str) -> list[IndexEntry]:
        """Every object frame of a pack, from its index file, else by scanning it."""
        if self.writer is not None and self.writer.pack_id == pack_id:
            return list(self.writer.entries)
        lay, path = self.layout, self.paths[pack_id]
        try:
            idx = lay.index_path(pack_id)
            return read_index(idx, pack_id, lay.rel(idx)).entries
        except (FileNotFoundError, CorruptionError):
            return scan_entries(path, pack_id, lay.rel(path))

    def file_bytes(self, pack_id: str) -> int:
        """Bytes of a pack and its index file."""
        paths = (self.paths[pack_id], self.layout.index_path(pack_id))
        return sum(p.stat().st_size for p in paths if p.exists())

    def forget(self, pack_id: str, entries: list[IndexEntry]) -> None:
        """Take a pack about to be deleted out of the map (the caller holds ``lock``)."""
        for e in entries:
            loc = self.index.get(e.id)
            if loc is not None and loc.pack_id == pack_id:
                del self.index[e.id]
        self.paths.pop(pack_id, None)
        self.sealed.discard(pack_id)
        self._drop_reader(pack_id)
        self.codecs.forget(pack_id)

    def verify(self) -> list[Problem]:
        """See ``BlobStore.verify``."""
        with self.lock:
            if self.writer is not None:
                self.writer.sync()
            return verify_packs(self.layout, self.codecs, self.index.keys(), self.doomed)


def open_pack(path: Path, rel: str) -> BinaryIO:
    """Open a pack for reading; a missing file is damage."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorruptionError("pack file is missing", path=rel) from None
    except OSError as exc:
        raise RepositoryError(f"cannot read {rel}: {exc.strerror}") from exc


class _Reader:
    """A pack file open for reads by any number of threads (``pread``: no shared position).

    ``users`` counts the reads in progress; a retired handle (its pack forgotten, or the
    least recently used) is closed when the last of them ends, never under a read, so its
    descriptor cannot be reused for another file while a read still holds it. ``users``
    and ``retire`` are changed under the pack set's lock.
    """

    __slots__ = ("fd", "rel", "retired", "users")

    def __init__(self, fd: int, rel: str) -> None:
        self.fd, self.rel = fd, rel
        self.users, self.retired = 0, False

    def pread(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file)."""
        try:
            return os.pread(self.fd, length, offset)
        except OSError as exc:
            raise RepositoryError(f"cannot read {self.rel}: {exc.strerror}") from exc

    def retire(self) -> None:
        """Close once no read uses it."""
        self.retired = True
        if not self.users:
            os.close(self.fd)

    def release(self) -> None:
        """A read has ended."""
        self.users -= 1
        if self.retired and not self.users:
            os.close(self.fd)
