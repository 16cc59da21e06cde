"""A repository: one directory holding the journal, the blob store, keys and checkpoints.

Layout (see docs/FORMAT.md)::

    repository.json     format version, id, encryption mode
    keys.json           wrapped data keys and id key (every mode but the legacy "none")
    journal/            segments, their indexes, manifest.json, LOCK
    blobs/              packs of file-content chunks and their indexes
    checkpoints/        one JSON file per named consumer

Encryption modes (``repository.json`` "encryption"), chosen once by ``init``:

    aes-256-gcm   everything is encrypted: journal frames, manifest MAC, every file content
    secrets       the journal and ordinary file contents are in clear; contents of files
                  classed as secrets are encrypted with the key ring (the journal stays
                  readable without the key; secret contents do not)
    none          legacy: no key ring, nothing encrypted, secret files cannot be stored
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from journal.blobs import BlobStore
from journal.checkpoints import Checkpoints
from journal.codec import AesGcm, Codec, Zstd
from journal.errors import AuthError, NotFound, RepositoryError
from journal.events import now_us
from journal.filekeys import FileKeys
from journal.keys import KeyRing, MasterSecret
from journal.log import (
    DEFAULT_FSYNC_INTERVAL_MS,
    DEFAULT_SEGMENT_MAX_AGE_S,
    DEFAULT_SEGMENT_MAX_BYTES,
    Durability,
    SegmentLog,
)
from journal.stores.local import LocalStore

__all__ = [
    "DEFAULT_COMPRESSION_LEVEL",
    "MODE_ALL",
    "MODE_NONE",
    "MODE_SECRETS",
    "REPOSITORY_FORMAT",
    "Reopener",
    "Repository",
]

REPOSITORY_FORMAT = 1
DEFAULT_COMPRESSION_LEVEL = 3
CONFIG_KEY = "repository.json"
KEYS_KEY = "keys.json"
MODE_ALL = "aes-256-gcm"
"""Everything is encrypted."""
MODE_SECRETS = "secrets"
"""Only the contents of secret files are encrypted."""
MODE_NONE = "none"
"""Legacy: no key ring; secret files cannot be stored."""
_MODES = (MODE_ALL, MODE_SECRETS, MODE_NONE)


@dataclass(frozen=True)
class Reopener:
    """What another process needs to open a repository read-only: its root and key. It
    pickles, so a worker process can be given it (``MasterSecret`` hides itself in reprs)."""

    root: Path
    secret: MasterSecret | None

    def open(self) -> Repository:
        """The repository, opened read-only."""
        return Repository.open(self.root, self.secret)


class Repository:
    """An opened repository; use ``Repository.init`` or ``Repository.open``."""

    def __init__(
        self,
        root: Path,
        doc: dict[str, Any],
        ring: KeyRing | None,
        log: SegmentLog,
        secret_codec: Codec | None = None,
        file_keys: FileKeys | None = None,
        secret: MasterSecret | None = None,
    ) -> None:
        self.root, self.id, self.ring, self.log = root, str(doc["id"]), ring, log
        self._secret = secret
        self.created_us = int(doc["created_us"])
        self._mode = str(doc["encryption"])
        self.store = log.store
        self.codec = log.codec
        self.secret_codec = secret_codec
        self.file_keys = file_keys
        self.checkpoints = Checkpoints(self.store)
        self._blobs: BlobStore | None = None

    @property
    def blobs(self) -> BlobStore:
        """The blob store for file contents, opened on first use (writable with the journal).

        Only the journal's writer may write blobs, so the journal's lock guards both. In
        "secrets" mode secret contents are sealed with the key ring, if it was unlocked.
        """
        if self._blobs is None:
            self._blobs = BlobStore(
                self.root,
                self.codec,
                self.ring.id_key if self.encrypted and self.ring else None,
                secret_codec=self.secret_codec,
                secret_id_key=self.ring.id_key if self.ring else None,
                secrets_locked=self._mode == MODE_SECRETS and self.ring is None,
                file_keys=self.file_keys,
                writable=self.log.writable,
            )
        return self._blobs

    def reopener(self) -> Reopener:
        """How a worker process opens this repository read-only, with the same key."""
        return Reopener(self.root, self._secret)

    @property
    def mode(self) -> str:
        """The encryption mode: "aes-256-gcm", "secrets" or "none" (see the module doc)."""
        return self._mode

    @property
    def encrypted(self) -> bool:
        """Whether everything (journal frames and every file content) is encrypted."""
        return self._mode == MODE_ALL

    @property
    def record_cipher(self) -> AesGcm | None:
        """The cipher that seals the repository's JSON records (backups, recoveries):
        the codec's in an encrypted repository; None (signed with a SHA-256) otherwise."""
        return self.codec.cipher if self.encrypted else None

    @classmethod
    def init(cls, root: Path, secret: MasterSecret | None, *, encrypt_all: bool = True) -> None:
        """Create an empty repository at ``root``, with a key ring sealed by ``secret``.

        ``encrypt_all`` encrypts everything ("aes-256-gcm"); without it only secret file
        contents are ("secrets"). No secret makes a legacy "none" repository, which cannot
        store secret files.
        """
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
            "encryption": _mode_for(secret, encrypt_all),
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
        """Open the repository at ``root``; ``writable`` takes the single-writer lock.

        An "aes-256-gcm" repository needs ``secret`` (AuthError without it). A "secrets"
        one opens without it too: the journal and ordinary contents read and write as
        usual, while storing or reading a secret content raises AuthError.
        """
        store = LocalStore(root)
        doc = _read_config(store, root)
        ring = _unlock(store, doc, secret)
        encrypt_all = doc["encryption"] == MODE_ALL
        cipher = AesGcm(ring) if ring else None  # one, so a rotation reaches every user
        codec = Codec(
            Zstd(compression_level) if compression_level else None,
            cipher if encrypt_all else None,
        )
        secret_codec = Codec(codec.compressor, cipher) if cipher and not encrypt_all else None
        file_keys = FileKeys(root, str(doc["id"]), cipher) if cipher else None
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
            mac_key=ring.subkey("manifest") if ring and encrypt_all else None,
            file_keys=file_keys if encrypt_all else None,
        )
        return cls(root, doc, ring, log, secret_codec, file_keys, secret)

    def rotate_key(self, secret: MasterSecret | None) -> int:
        """Add a new data key, make it active, and return its id; old frames stay readable."""
        if self._mode == MODE_NONE:
            raise RepositoryError("this repository is not encrypted; there is no key to rotate")
        if self.ring is None or secret is None:
            raise AuthError(
                "the repository was opened without its key: give it with --key-file, "
                "$HINDSIGHT_KEY or $HINDSIGHT_PASSPHRASE"
            )
        ring = self.ring.rotated()
        self.store.put(KEYS_KEY, json.dumps(ring.wrap(secret, self.id), indent=2).encode())
        self.ring = ring
        if self.file_keys is not None:  # its cipher is the one every codec shares
            self.file_keys.ring_cipher.use(ring)
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
    if doc.get("encryption") not in _MODES:
        raise RepositoryError(
            f"encryption mode {doc.get('encryption')!r} in {root / CONFIG_KEY} is not "
            f"supported by this version (supports {', '.join(_MODES)}); upgrade Hindsight"
        )
    return dict(doc)


def _mode_for(secret: MasterSecret | None, encrypt_all: bool) -> str:
    if secret is None:
        return MODE_NONE
    return MODE_ALL if encrypt_all else MODE_SECRETS


def _unlock(store: LocalStore, doc: dict[str, Any], secret: MasterSecret | None) -> KeyRing | None:
    if doc["encryption"] == MODE_NONE:
        return None
    if secret is None and doc["encryption"] == MODE_SECRETS:
        return None  # the journal is in clear; only secret contents need the key
    if secret is None:
        raise AuthError(
            "this repository is encrypted: give its key with --key-file, $HINDSIGHT_KEY "
            "or $HINDSIGHT_PASSPHRASE"
        )
    try:
        ring_doc = json.loads(store.get(KEYS_KEY))
    except NotFound:
        raise RepositoryError(f"the repository's {KEYS_KEY} is missing") from None
    return KeyRing.unwrap(ring_doc, secret, str(doc["id"]))
