"""Content-addressed storage of file contents, deduplicated across files and versions.

Terms:
- *chunk*: a piece of a file's content cut by content-defined chunking (FastCDC), so an edit
  moves only the cuts near it. Its *id* is the BLAKE3 hash of its bytes, keyed with the
  repository's id key when the chunk is encrypted (ids then reveal nothing).
- *secret*: a content put with ``secret=True`` (a file classed as a secret). It is always
  encrypted, under keyed ids, even in a store whose other contents are not; there it shares
  no chunk with ordinary contents and its ``BlobRef.sha256`` is empty.
- *blob*: one file content. It is stored as a *blob list*, a small object holding the
  content's size and SHA-256 and its chunk ids in order; the blob id is the list's id, so
  the same content always gets the same id and is stored once.
- *object*: a stored chunk or blob list: one checksummed frame holding a clear header (kind,
  codec flags, key id, raw length, id) and the compressed, encrypted body.
- *pack*: a file of objects. The *open* pack is appended to; at ``pack_max_bytes`` it is
  *sealed*: indexed, moved to ``packs/`` and never modified again.
- *index*: per sealed pack, a file listing each object's id, kind, offset and length, plus
  the pack's SHA-256; loaded into memory when the store opens.
- *garbage*: an object no *live* blob (one the caller still needs) is or uses; ``collect``
  deletes packs of garbage and rewrites packs that are mostly garbage. An encrypted pack's
  objects are under the pack's own key, destroyed with the pack.

Layout under ``<repository>/blobs``: ``open/<pack>.pack``, ``packs/<pack>.pack``,
``index/<pack>.idx``. The byte formats and the crash ordering are in docs/FORMAT.md.
"""

from journal.blobs.chunker import (
    DEFAULT_AVG_CHUNK,
    DEFAULT_MAX_CHUNK,
    DEFAULT_MIN_CHUNK,
    DEFAULT_WINDOW,
    Chunker,
    Readable,
)
from journal.blobs.store import (
    BLOBS_DIR,
    DEFAULT_PACK_MAX_BYTES,
    BlobRef,
    BlobStats,
    BlobStore,
    CollectReport,
)

__all__ = [
    "BLOBS_DIR",
    "DEFAULT_AVG_CHUNK",
    "DEFAULT_MAX_CHUNK",
    "DEFAULT_MIN_CHUNK",
    "DEFAULT_PACK_MAX_BYTES",
    "DEFAULT_WINDOW",
    "BlobRef",
    "BlobStats",
    "BlobStore",
    "Chunker",
    "CollectReport",
    "Readable",
]
