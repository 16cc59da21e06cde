"""``BlobStore``: file contents as deduplicated, content-defined chunks in pack files.

One process writes a store at a time (the repository lock sees to that); within it, puts
from several threads are serialised by a lock around each append. Reads need no lock
beyond the moment a pack file is opened, since the open pack may be renamed when sealed.
``collect`` deletes what no live blob needs (see ``journal.blobs.collect``); puts wait for it.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from journal.blobs.chunker import (
    DEFAULT_AVG_CHUNK,
    DEFAULT_MAX_CHUNK,
    DEFAULT_MIN_CHUNK,
    DEFAULT_WINDOW,
    Chunker,
    Readable,
)
from journal.blobs.collect import (
    DEFAULT_PROTECT_NEWER_THAN_S,
    DEFAULT_REWRITE_THRESHOLD,
    CollectGate,
    CollectReport,
    collect_packs,
)
from journal.blobs.objects import (
    ID_BYTES,
    KIND_DATA,
    KIND_LIST,
    LIST_HEAD,
    ObjectCodec,
    ObjectIds,
    StoreCodecs,
)
from journal.blobs.packs import PackLayout
from journal.blobs.packset import PackSet
from journal.codec import Codec
from journal.errors import AuthError, ConfigError, CorruptionError, NotFound, RepositoryError
from journal.filekeys import FileKeys
from journal.integrity import Problem
from journal.protocols import BlobRef

__all__ = [
    "BLOBS_DIR",
    "DEFAULT_PACK_MAX_BYTES",
    "DEFAULT_PROTECT_NEWER_THAN_S",
    "DEFAULT_REWRITE_THRESHOLD",
    "BlobRef",
    "BlobStats",
    "BlobStore",
    "CollectReport",
]

BLOBS_DIR = "blobs"
DEFAULT_PACK_MAX_BYTES = 32 * 1024 * 1024
COLLECT_LOCKED = (
    'collecting garbage in a "secrets" repository needs its key: secret blob lists must be '
    "read to find the chunks they use, and secret objects re-encrypted when their pack is "
    "rewritten; give the key with --key-file, $HINDSIGHT_KEY or $HINDSIGHT_PASSPHRASE"
)


@dataclass(frozen=True, slots=True)
class BlobStats:
    """Counts for status output; ``stored_bytes`` is the size of the pack files on disk."""

    packs: int
    sealed_packs: int
    chunks: int
    blobs: int
    stored_bytes: int
    raw_bytes: int


class BlobStore:
    """Content-addressed storage of file contents under ``root / "blobs"``.

    ``root`` is the repository root (problems and errors name files relative to it);
    ``id_key`` is the key ring's id key for an encrypted repository, else None.
    ``secret_codec`` (which must encrypt) and ``secret_id_key`` seal and name secret
    contents (``put_stream(..., secret=True)``) when ``codec`` does not encrypt; when it
    does, secrets are stored like everything else and these may be left out. Without
    them, storing or reading a secret raises AuthError if ``secrets_locked`` (the
    repository has a key ring that was not unlocked), else RepositoryError.
    ``file_keys`` holds each pack's own key; a store whose codecs encrypt needs it.
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
        file_keys: FileKeys | None = None,
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
        self._codecs = _store_codecs(
            codec, id_key, secret_codec, secret_id_key, secrets_locked, file_keys
        )
        self._chunker = Chunker(min_chunk, avg_chunk, max_chunk, window)
        self._packs = PackSet(self.layout, self._codecs, writable, pack_max_bytes)
        self._index = self._packs.index  # the same dict: reads of it need no lock
        self.recovery_notes = self._packs.notes
        self._gate = CollectGate()
        self._recent: dict[bytes, float] = {}  # blob list -> when this store last put it
        self._closed = False

    def __repr__(self) -> str:
        return f"BlobStore({str(self.layout.base)!r}, writable={self.writable})"

    def listing(self) -> Iterator[tuple[str, str, int]]:
        """Every stored file content: (blob id, pack id, chunk count), in no set order."""
        for raw_id, loc in list(self._index.items()):
            if loc.kind == KIND_LIST:
                yield raw_id.hex(), loc.pack_id, (loc.raw_len - LIST_HEAD.size) // ID_BYTES

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
        with self._gate.put():
            for chunk in self._chunker.chunks(f):
                sha.update(chunk)
                size += len(chunk)
                ids += self._put_object(oc, KIND_DATA, chunk)
            body = LIST_HEAD.pack(size, sha.digest()) + ids
            raw_id = self._put_object(oc, KIND_LIST, body)
            self._recent[raw_id] = time.time()
        hidden = secret and self._codecs.separate
        return BlobRef(raw_id.hex(), size, "" if hidden else sha.hexdigest())

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
        zflag, data = oc.codec.compress_if_worth_it(body)  # outside the lock: the slow part
        self._packs.store(oc, kind, raw_id, zflag, data, len(body))
        return raw_id

    def _check_writable(self) -> None:
        if self._closed:
            raise RepositoryError(f"{self!r} is closed")
        if not self.writable:
            raise RepositoryError(f"{self!r} was opened read-only; open it writable to store")

    def flush(self) -> None:
        """Make every blob put so far durable (fsync the open pack)."""
        self._packs.flush()

    def seal(self) -> None:
        """Seal the open pack now (it is sealed anyway once it reaches ``pack_max_bytes``)."""
        with self._packs.lock:
            self._packs.seal_locked()

    def close(self) -> None:
        """Flush and close; the open pack stays open on disk, to be appended to next time."""
        self._packs.close()
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

    def opened(self, blob_id: str) -> tuple[BlobRef, Iterator[bytes]]:
        """``stat`` and ``open`` with one read of the blob's list: its recorded size and
        SHA-256, and its content chunk by chunk.

        The list is checked against the blob's id and each chunk against its own, so the
        content streamed is the content whose size and SHA-256 the list records: a reader
        can compare those with what it expects instead of hashing every byte again.
        """
        size, sha, ids = self._read_list(blob_id)
        return BlobRef(blob_id, size, sha), self._stream(blob_id, ids)

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
        body = self._packs.read(raw)
        size, sha = LIST_HEAD.unpack_from(body)
        ids = body[LIST_HEAD.size :]
        return size, sha.hex(), [ids[i : i + ID_BYTES] for i in range(0, len(ids), ID_BYTES)]

    def _stream(self, blob_id: str, ids: list[bytes]) -> Iterator[bytes]:
        """The chunks, once every one is known to be stored (a blob missing one is damaged
        before the first byte is given out)."""
        for raw in ids:
            if raw not in self._index:
                base = self.layout.rel(self.layout.base)
                msg = f"blob {blob_id} needs chunk {raw.hex()}, which is missing from {base}/"
                raise CorruptionError(msg)
        yield from self._packs.read_many(ids)

    # --- reporting ----------------------------------------------------------------------

    def stats(self) -> BlobStats:
        """Counts of packs, chunks and blobs, and their sizes."""
        with self._packs.lock:
            locs = list(self._index.values())
            paths = list(self._packs.paths.values())
            sealed = len(self._packs.sealed)
            stored = sum(p.stat().st_size for p in paths if p.exists())
        data = [loc for loc in locs if loc.kind == KIND_DATA]
        raw = sum(loc.raw_len for loc in data)
        return BlobStats(len(paths), sealed, len(data), len(locs) - len(data), stored, raw)

    def verify(self) -> list[Problem]:
        """Read and check every pack and index file; one Problem per damaged place.

        Holds the write lock throughout, so puts wait until it finishes.
        """
        return self._packs.verify()

    # --- garbage collection -------------------------------------------------------------

    def collect(
        self,
        live: Iterable[str],
        *,
        dry_run: bool = False,
        rewrite_threshold: float = DEFAULT_REWRITE_THRESHOLD,
        protect_newer_than_s: float = DEFAULT_PROTECT_NEWER_THAN_S,
    ) -> CollectReport:
        """Delete every object the blobs ``live`` do not need; report what went.

        ``live`` are blob ids (as ``put_*`` returned them) that must stay readable: their
        lists and every chunk they use are kept, chunks shared with garbage blobs included.
        Blobs put less than ``protect_newer_than_s`` seconds ago are kept too (0: none), as
        the events naming them may not be appended yet, or not seen by whoever computed
        ``live``: those put through this store (by this process), and every blob list in a
        pack file written to that recently (by any process).

        A pack without live objects is deleted. A pack whose garbage is at least
        ``rewrite_threshold`` of its object bytes is rewritten: its live objects are copied
        to the open pack (encrypted ones re-encrypted under that pack's key) and fsynced
        before it is deleted. Other packs keep their garbage (``garbage_bytes``). Deleting
        destroys a pack's key file first; a crash at any point loses no live object (see
        ``journal.blobs.collect``). Puts wait while it runs; nothing changes with ``dry_run``.

        Needs a writable store, and in a "secrets" repository its key (AuthError without).
        """
        self._check_writable()
        if self._codecs.secrets_unreadable:
            raise AuthError(COLLECT_LOCKED)
        if not 0.0 <= rewrite_threshold <= 1.0:
            raise ConfigError(f"rewrite_threshold must be between 0 and 1, not {rewrite_threshold}")
        roots = {_parse_id(blob_id) for blob_id in live}
        with self._gate.collect():
            since = time.time() - protect_newer_than_s if protect_newer_than_s > 0 else None
            recent = {r for r, t in self._recent.items() if since is not None and t >= since}
            report = collect_packs(self._packs, roots, recent, since, rewrite_threshold, dry_run)
            if not dry_run:
                self._recent = {r: t for r, t in self._recent.items() if r in recent}
        return report


def _store_codecs(
    codec: Codec,
    id_key: bytes | None,
    secret_codec: Codec | None,
    secret_id_key: bytes | None,
    locked: bool,
    keys: FileKeys | None,
) -> StoreCodecs:
    ordinary = ObjectCodec(codec, ObjectIds(id_key))
    if secret_codec is None:
        return StoreCodecs(ordinary, None, locked, keys)
    if secret_id_key is None:
        raise ConfigError("a secret codec needs a secret id key: secret ids must be keyed")
    secret = ObjectCodec(secret_codec, ObjectIds(secret_id_key))
    return StoreCodecs(ordinary, secret, locked, keys)


def _parse_id(blob_id: str) -> bytes:
    try:
        raw = bytes.fromhex(blob_id)
    except ValueError:
        raw = b""
    if len(raw) != ID_BYTES:
        raise ConfigError(f"{blob_id!r} is not a blob id ({2 * ID_BYTES} hex digits)")
    return raw
