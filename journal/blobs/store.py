"""``BlobStore``: file contents as deduplicated, content-defined chunks in pack files.

One process writes a store at a time (the repository lock sees to that); within it, puts
from several threads are serialised by a lock around each append. Reads need no lock
beyond the moment a pack file is opened, since the open pack may be renamed when sealed.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, NamedTuple

from journal.blobs.chunker import (
    DEFAULT_AVG_CHUNK,
    DEFAULT_MAX_CHUNK,
    DEFAULT_MIN_CHUNK,
    DEFAULT_WINDOW,
    Chunker,
    Readable,
)
from journal.blobs.objects import (
    ID_BYTES,
    KIND_DATA,
    KIND_LIST,
    LIST_HEAD,
    ObjectCodec,
    ObjectIds,
    StoreCodecs,
    decode_object,
    encode_object,
)
from journal.blobs.packs import (
    IndexEntry,
    PackLayout,
    PackWriter,
    check_pack_header,
    finish_move,
    new_pack_id,
    read_index,
    recover_open_pack,
    scan_entries,
    seal_pack,
)
from journal.blobs.verify import verify_packs
from journal.codec import Codec
from journal.errors import ConfigError, CorruptionError, NotFound, RepositoryError
from journal.framing import read_frame_at
from journal.integrity import Problem
from journal.protocols import BlobRef

__all__ = ["BLOBS_DIR", "DEFAULT_PACK_MAX_BYTES", "BlobRef", "BlobStats", "BlobStore"]

BLOBS_DIR = "blobs"
DEFAULT_PACK_MAX_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class BlobStats:
    """Counts for status output; ``stored_bytes`` is the size of the pack files on disk."""

    packs: int
    sealed_packs: int
    chunks: int
    blobs: int
    stored_bytes: int
    raw_bytes: int


class _Loc(NamedTuple):
    pack_id: str
    kind: int
    offset: int
    length: int
    raw_len: int


class BlobStore:
    """Content-addressed storage of file contents under ``root / "blobs"``.

    ``root`` is the repository root (problems and errors name files relative to it);
    ``id_key`` is the key ring's id key for an encrypted repository, else None.
    ``secret_codec`` (which must encrypt) and ``secret_id_key`` seal and name secret
    contents (``put_stream(..., secret=True)``) when ``codec`` does not encrypt; when it
    does, secrets are stored like everything else and these may be left out. Without
    them, storing or reading a secret raises AuthError if ``secrets_locked`` (the
    repository has a key ring that was not unlocked), else RepositoryError.
    A put blob is durable once ``flush`` (or ``close``) returns.
    """

    def __init__(
        self,
        root: Path,
        codec: Codec,
        id_key: bytes | None,
        *,
        secret_codec: Codec | None = None,
        secret_id_key: bytes | None = None,
        secrets_locked: bool = False,
        writable: bool = True,
        pack_max_bytes: int = DEFAULT_PACK_MAX_BYTES,
        min_chunk: int = DEFAULT_MIN_CHUNK,
        avg_chunk: int = DEFAULT_AVG_CHUNK,
        max_chunk: int = DEFAULT_MAX_CHUNK,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        self.layout = PackLayout(root, root / BLOBS_DIR)
        self.codec = codec
        self.writable = writable
        self.pack_max_bytes = pack_max_bytes
        self.recovery_notes: list[str] = []
        self._codecs = _store_codecs(codec, id_key, secret_codec, secret_id_key, secrets_locked)
        self._chunker = Chunker(min_chunk, avg_chunk, max_chunk, window)
        self._index: dict[bytes, _Loc] = {}
        self._paths: dict[str, Path] = {}
        self._sealed: set[str] = set()
        self._checked: set[str] = set()
        self._writer: PackWriter | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._load()

    def __repr__(self) -> str:
        return f"BlobStore({str(self.layout.base)!r}, writable={self.writable})"

    # --- opening ------------------------------------------------------------------------

    def _load(self) -> None:
        lay = self.layout
        if self.writable:
            for d in (lay.open_dir, lay.packs_dir, lay.index_dir):
                d.mkdir(parents=True, exist_ok=True)
        indexed = lay.ids_in(lay.index_dir, ".idx")
        sealed = lay.ids_in(lay.packs_dir, ".pack")
        opened = lay.ids_in(lay.open_dir, ".pack")
        for pid in sorted(opened & indexed):
            self._paths[pid] = self._finish_interrupted_seal(pid)
        for pid in sorted(sealed - opened):
            self._paths[pid] = lay.sealed_path(pid)
        for pid in sorted(self._paths):
            self._load_sealed(pid, pid in indexed)
        for pid in sorted(indexed - sealed - opened):
            rel = lay.rel(lay.index_path(pid))
            self.recovery_notes.append(f"{rel}: its pack is missing; its chunks are unavailable")
        self._recover_open(sorted(opened - indexed))

    def _finish_interrupted_seal(self, pack_id: str) -> Path:
        """A crash fell between writing the index and moving the pack: finish the move."""
        if not self.writable:
            return self.layout.open_path(pack_id)
        self.recovery_notes.append(f"finished sealing pack {pack_id}, interrupted by a crash")
        return finish_move(self.layout, pack_id)

    def _load_sealed(self, pack_id: str, has_index: bool) -> None:
        lay, path = self.layout, self._paths[pack_id]
        self._sealed.add(pack_id)
        if has_index:
            idx_path = lay.index_path(pack_id)
            try:
                self._add(pack_id, read_index(idx_path, pack_id, lay.rel(idx_path)).entries)
                return
            except CorruptionError as exc:
                self.recovery_notes.append(f"{exc}; indexed {lay.rel(path)} by scanning it")
        else:
            self.recovery_notes.append(f"{lay.rel(path)} has no index file; indexed by scanning")
        self._add(pack_id, scan_entries(path, pack_id, lay.rel(path)))

    def _recover_open(self, pack_ids: list[str]) -> None:
        writers = []
        for pid in pack_ids:
            rec = recover_open_pack(self.layout, pid, self.writable)
            if rec.note:
                self.recovery_notes.append(rec.note)
            path = self.layout.open_path(pid)
            if rec.end == 0:
                # Created but not even its header frame survived: nothing to keep.
                if self.writable:
                    path.unlink()
                continue
            self._paths[pid] = path
            self._add(pid, rec.entries)
            if self.writable:
                writers.append(PackWriter.resume(self.layout, pid, rec.entries))
        # This code keeps one pack open; more can only come from outside (a directory copied
        # together from several stores), so all but one are sealed.
        for extra in writers[:-1]:
            self._paths[extra.pack_id] = seal_pack(self.layout, extra)
            self._sealed.add(extra.pack_id)
        self._writer = writers[-1] if writers else None

    def _add(self, pack_id: str, entries: list[IndexEntry]) -> None:
        for e in entries:
            self._index.setdefault(e.id, _Loc(pack_id, e.kind, e.offset, e.length, e.raw_len))

    # --- writing ------------------------------------------------------------------------

    def put_stream(self, f: Readable, *, secret: bool = False) -> BlobRef:
        """Store the content read from ``f`` (to its end) and return its reference.

        Memory stays bounded by the chunk window (plus 32 bytes per chunk for the blob list)
        whatever the size; only chunks not already stored are written. Durable once
        ``flush`` returns.

        ``secret`` (a file classed as a secret) seals the content with the secret codec and
        keyed ids, so it is encrypted even where nothing else is. When the main codec does
        not encrypt, the returned ``sha256`` is then ``""``: the journal that records it is
        in clear, and a bare hash would confirm a guessed content; ``stat`` with the key
        gives the real one. Secret and ordinary copies of one content share no chunk.
        """
        self._check_writable()
        oc = self._codecs.for_put(secret)
        sha, size, ids = hashlib.sha256(), 0, bytearray()
        for chunk in self._chunker.chunks(f):
            sha.update(chunk)
            size += len(chunk)
            ids += self._put_object(oc, KIND_DATA, chunk)
        body = LIST_HEAD.pack(size, sha.digest()) + ids
        blob_id = self._put_object(oc, KIND_LIST, body).hex()
        hidden = secret and self._codecs.separate
        return BlobRef(blob_id, size, "" if hidden else sha.hexdigest())

    def put_bytes(self, data: bytes, *, secret: bool = False) -> BlobRef:
        """Store ``data``; see ``put_stream``."""
        return self.put_stream(io.BytesIO(data), secret=secret)

    def put_file(self, path: Path, *, secret: bool = False) -> BlobRef:
        """Store the content of the file at ``path``; see ``put_stream``.

        An OSError reading the source is not translated: the caller decides whether a file
        that vanished or became unreadable matters.
        """
        with open(path, "rb") as f:
            return self.put_stream(f, secret=secret)

    def _put_object(self, oc: ObjectCodec, kind: int, body: bytes) -> bytes:
        self._check_writable()
        raw_id = oc.ids.of(kind, body)
        if raw_id in self._index:
            return raw_id
        payload = encode_object(oc.codec, kind, raw_id, body)  # outside the lock: slow part
        with self._lock:
            if raw_id not in self._index:
                self._append(kind, raw_id, payload, len(body))
        return raw_id

    def _append(self, kind: int, raw_id: bytes, payload: bytes, raw_len: int) -> None:
        if self._writer is None:
            self._writer = PackWriter.create(self.layout, new_pack_id())
            self._paths[self._writer.pack_id] = self._writer.path
        entry = self._writer.append(kind, raw_id, payload, raw_len)
        self._index[raw_id] = _Loc(self._writer.pack_id, kind, entry.offset, entry.length, raw_len)
        if self._writer.size >= self.pack_max_bytes:
            self._seal_locked()

    def _check_writable(self) -> None:
        if self._closed:
            raise RepositoryError(f"{self!r} is closed")
        if not self.writable:
            raise RepositoryError(f"{self!r} was opened read-only; open it writable to store")

    def flush(self) -> None:
        """Make every blob put so far durable (fsync the open pack)."""
        with self._lock:
            if self._writer is not None:
                self._writer.sync()

    def seal(self) -> None:
        """Seal the open pack now (it is sealed anyway once it reaches ``pack_max_bytes``)."""
        with self._lock:
            self._seal_locked()

    def _seal_locked(self) -> None:
        if self._writer is None:
            return
        pid = self._writer.pack_id
        self._paths[pid] = seal_pack(self.layout, self._writer)
        self._sealed.add(pid)
        self._writer = None

    def close(self) -> None:
        """Flush and close; the open pack stays open on disk, to be appended to next time."""
        with self._lock:
            if self._writer is not None:
                self._writer.sync()
                self._writer.close()
                self._writer = None
            self._closed = True

    def __enter__(self) -> BlobStore:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------

    def exists(self, blob_id: str) -> bool:
        """Whether a blob with this id is stored."""
        try:
            loc = self._index.get(bytes.fromhex(blob_id))
        except ValueError:
            return False
        return loc is not None and loc.kind == KIND_LIST

    def stat(self, blob_id: str) -> BlobRef:
        """Size and SHA-256 of a stored blob, without reading its content.

        For a secret blob this reads its encrypted list, so it needs the key (AuthError
        without it) and gives the real SHA-256 that ``put_stream`` left out of its ref.
        """
        size, sha, _ = self._read_list(blob_id)
        return BlobRef(blob_id, size, sha)

    def open(self, blob_id: str) -> Iterator[bytes]:
        """Stream a blob's content chunk by chunk, each checked against its id.

        NotFound is raised here, not on the first ``next``; damage surfaces as
        CorruptionError (or AuthError for a failed tag) when the damaged chunk is reached.
        """
        _, _, ids = self._read_list(blob_id)
        return self._stream(blob_id, ids)

    def read(self, blob_id: str) -> bytes:
        """A blob's whole content; use ``open`` for large ones."""
        return b"".join(self.open(blob_id))

    def _read_list(self, blob_id: str) -> tuple[int, str, list[bytes]]:
        raw = _parse_id(blob_id)
        if raw not in self._index or self._index[raw].kind != KIND_LIST:
            where = self.layout.rel(self.layout.base)
            raise NotFound(
                f"blob {blob_id} is not in {where}/: it was never stored, or its put was not "
                "flushed before a crash"
            )
        body = self._read_object(raw)
        size, sha = LIST_HEAD.unpack_from(body)
        ids = body[LIST_HEAD.size :]
        return size, sha.hex(), [ids[i : i + ID_BYTES] for i in range(0, len(ids), ID_BYTES)]

    def _stream(self, blob_id: str, ids: list[bytes]) -> Iterator[bytes]:
        for raw in ids:
            if raw not in self._index:
                base = self.layout.rel(self.layout.base)
                msg = f"blob {blob_id} needs chunk {raw.hex()}, which is missing from {base}/"
                raise CorruptionError(msg)
            yield self._read_object(raw)

    def _read_object(self, raw_id: bytes) -> bytes:
        loc = self._index[raw_id]
        with self._lock:
            path = self._paths[loc.pack_id]
            f = _open_pack(path, self.layout.rel(path))
        rel = self.layout.rel(path)
        with f:
            if loc.pack_id not in self._checked:
                check_pack_header(f, loc.pack_id, rel)
                self._checked.add(loc.pack_id)
            payload = read_frame_at(f, loc.offset, rel)
        header, body = decode_object(self._codecs, payload, rel, loc.offset)
        if header.id != raw_id or header.kind != loc.kind:
            msg = f"the index points here for {raw_id.hex()}, but the frame holds another object"
            raise CorruptionError(msg, path=rel, offset=loc.offset)
        return body

    # --- reporting ----------------------------------------------------------------------

    def stats(self) -> BlobStats:
        """Counts of packs, chunks and blobs, and their sizes."""
        with self._lock:
            locs = list(self._index.values())
            paths = list(self._paths.values())
            sealed = len(self._sealed)
            stored = sum(p.stat().st_size for p in paths if p.exists())
        data = [loc for loc in locs if loc.kind == KIND_DATA]
        raw = sum(loc.raw_len for loc in data)
        return BlobStats(len(paths), sealed, len(data), len(locs) - len(data), stored, raw)

    def verify(self) -> list[Problem]:
        """Read and check every pack and index file; one Problem per damaged place.

        Holds the write lock throughout, so puts wait until it finishes.
        """
        with self._lock:
            if self._writer is not None:
                self._writer.sync()
            return verify_packs(self.layout, self._codecs, self._index.keys())


def _store_codecs(
    codec: Codec,
    id_key: bytes | None,
    secret_codec: Codec | None,
    secret_id_key: bytes | None,
    locked: bool,
) -> StoreCodecs:
    ordinary = ObjectCodec(codec, ObjectIds(id_key))
    if secret_codec is None:
        return StoreCodecs(ordinary, None, locked)
    if secret_id_key is None:
        raise ConfigError("a secret codec needs a secret id key: secret ids must be keyed")
    return StoreCodecs(ordinary, ObjectCodec(secret_codec, ObjectIds(secret_id_key)), locked)


def _parse_id(blob_id: str) -> bytes:
    try:
        raw = bytes.fromhex(blob_id)
    except ValueError:
        raw = b""
    if len(raw) != ID_BYTES:
        raise ConfigError(f"{blob_id!r} is not a blob id ({2 * ID_BYTES} hex digits)")
    return raw


def _open_pack(path: Path, rel: str) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise CorruptionError("pack file is missing", path=rel) from None
    except OSError as exc:
        raise RepositoryError(f"cannot read {rel}: {exc.strerror}") from exc
