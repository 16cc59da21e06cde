"""A repository: one directory holding the journal, the blob store, keys and checkpoints.

Layout (see docs/FORMAT.md)::

    repository.json     format version, id, whether encrypted
    keys.json           wrapped data keys (encrypted repositories only)
    journal/            segments, their indexes, manifest.json, LOCK
    blobs/              packs of file-content chunks and their indexes
    checkpoints/        one JSON file per named consumer
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from journal.blobs import BlobStore
from journal.checkpoints import Checkpoints
from journal.codec import AesGcm, Codec, Zstd
from journal.errors import AuthError, NotFound, RepositoryError
from journal.events import now_us
from journal.keys import KeyRing, MasterSecret
from journal.log import (
    DEFAULT_FSYNC_INTERVAL_MS,
    DEFAULT_SEGMENT_MAX_AGE_S,
    DEFAULT_SEGMENT_MAX_BYTES,
    Durability,
    SegmentLog,
)
from journal.stores.local import LocalStore

__all__ = ["DEFAULT_COMPRESSION_LEVEL", "REPOSITORY_FORMAT", "Repository"]

REPOSITORY_FORMAT = 1
DEFAULT_COMPRESSION_LEVEL = 3
CONFIG_KEY = "repository.json"
KEYS_KEY = "keys.json"


class Repository:
    """An opened repository; use ``Repository.init`` or ``Repository.open``."""

    def __init__(self, root: Path, doc: dict[str, Any], ring: KeyRing | None, log: SegmentLog):
        self.root, self.id, self.ring, self.log = root, str(doc["id"]), ring, log
        self.created_us = int(doc["created_us"])
        self.store = log.store
        self.codec = log.codec
        self.checkpoints = Checkpoints(self.store)
        self._blobs: BlobStore | None = None

    @property
    def blobs(self) -> BlobStore:
        """The blob store for file contents, opened on first use (writable with the journal).

        Only the journal's writer may write blobs, so the journal's lock guards both.
        """
        if self._blobs is None:
            self._blobs = BlobStore(
                self.root,
                self.codec,
                self.ring.id_key if self.ring else None,
                writable=self.log.writable,
            )
        return self._blobs

    @property
    def encrypted(self) -> bool:
        """Whether frames and chunks are encrypted."""
        return self.ring is not None

    @classmethod
    def init(cls, root: Path, secret: MasterSecret | None) -> None:
        """Create an empty repository at ``root``; encrypted exactly when a secret is given."""
        store = LocalStore(root)
        if (root / CONFIG_KEY).exists():
            raise RepositoryError(f"{root} already holds a Hindsight repository")
        if root.exists() and any(root.iterdir()):
            raise RepositoryError(f"{root} is not empty; choose an empty or new directory")
        root.mkdir(parents=True, exist_ok=True)
        repo_id = uuid.uuid4().hex
        doc = {
            "format": REPOSITORY_FORMAT,
            "id": repo_id,
            "created_us": now_us(),
            "encryption": "aes-256-gcm" if secret else "none",
        }
        if secret is not None:
            ring_doc = KeyRing.create().wrap(secret, repo_id)
            store.put(KEYS_KEY, json.dumps(ring_doc, indent=2).encode())
        store.put(CONFIG_KEY, json.dumps(doc, indent=2).encode())  # last: marks init complete

    @classmethod
    def open(
        cls,
        root: Path,
        secret: MasterSecret | None = None,
        *,
        writable: bool = False,
        compression_level: int | None = DEFAULT_COMPRESSION_LEVEL,
        durability: Durability = Durability.BATCH,
        fsync_interval_ms: int = DEFAULT_FSYNC_INTERVAL_MS,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_age_s: int = DEFAULT_SEGMENT_MAX_AGE_S,
    ) -> Repository:
        """Open the repository at ``root``; ``writable`` takes the single-writer lock."""
        store = LocalStore(root)
        doc = _read_config(store, root)
        ring = _unlock(store, doc, secret)
        codec = Codec(
            Zstd(compression_level) if compression_level else None,
            AesGcm(ring) if ring else None,
        )
        log = SegmentLog(
            root,
            store,
            codec,
            doc["id"],
            writable=writable,
            durability=durability,
            fsync_interval_ms=fsync_interval_ms,
            segment_max_bytes=segment_max_bytes,
            segment_max_age_s=segment_max_age_s,
            mac_key=ring.subkey("manifest") if ring else None,
        )
        return cls(root, doc, ring, log)

    def rotate_key(self, secret: MasterSecret) -> int:
        """Add a new data key, make it active, and return its id; old frames stay readable."""
        if self.ring is None:
            raise RepositoryError("this repository is not encrypted; there is no key to rotate")
        ring = self.ring.rotated()
        self.store.put(KEYS_KEY, json.dumps(ring.wrap(secret, self.id), indent=2).encode())
        self.ring = ring
        if self.codec.cipher is not None:
            self.codec.cipher.use(ring)  # journal and blob store share this codec
        return ring.active

    def close(self) -> None:
        """Flush and release everything: blobs first, since events may point to them."""
        if self._blobs is not None:
            self._blobs.close()
        self.log.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_config(store: LocalStore, root: Path) -> dict[str, Any]:
    try:
        doc = json.loads(store.get(CONFIG_KEY))
    except NotFound:
        raise RepositoryError(
            f"no Hindsight repository at {root}; create one with `hindsight init --repo {root}`"
        ) from None
    except ValueError as exc:
        raise RepositoryError(f"{root / CONFIG_KEY} is not valid JSON: {exc}") from exc
    if doc.get("format") != REPOSITORY_FORMAT:
        raise RepositoryError(
            f"repository format {doc.get('format')!r} is not supported by this version "
            f"(supports {REPOSITORY_FORMAT}); upgrade Hindsight"
        )
    return dict(doc)


def _unlock(store: LocalStore, doc: dict[str, Any], secret: MasterSecret | None) -> KeyRing | None:
    if doc.get("encryption") == "none":
        return None
    if secret is None:
        raise AuthError(
            "this repository is encrypted: give its key with --key-file, $HINDSIGHT_KEY "
            "or $HINDSIGHT_PASSPHRASE"
        )
    try:
        ring_doc = json.loads(store.get(KEYS_KEY))
    except NotFound:
        raise RepositoryError("the repository is encrypted but keys.json is missing") from None
    return KeyRing.unwrap(ring_doc, secret, str(doc["id"]))
