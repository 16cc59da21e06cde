"""File keys: one random data key per encrypted segment or pack, so deleting data can destroy it.

A file key encrypts the frames of one segment (or the encrypted objects of one pack). It is
stored wrapped under the key ring's active data key, in a small key file of its own::

    keys/segments/<first seq, 20 digits>.key    keys/packs/<pack id>.key

Destroying that file (``shred``) before the data file is unlinked makes every copy of the data
file undecryptable, even with the master secret: *crypto-shredding*. Creating a key needs only
the unlocked ring, never the master secret; the ring is read from the ring cipher at each use,
so keys created after a rotation are wrapped under the new active key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from journal.codec import AesGcm
from journal.errors import AuthError, CorruptionError, RepositoryError
from journal.fsutil import atomic_write, fsync_dir, make_dirs, shred
from journal.keys import KEY_BYTES

__all__ = [
    "KEYS_DIR",
    "PACKS",
    "PARQUET",
    "SEGMENTS",
    "FileKeys",
    "key_names",
    "key_path",
    "shred_key",
    "sync_key_dir",
]

KEYS_DIR = "keys"
SEGMENTS = "segments"
PACKS = "packs"
PARQUET = "parquet"  # snapshot parts and history files, named <directory>.<name>
KEY_FILE_VERSION = 1
_LABELS = {SEGMENTS: "segment", PACKS: "pack", PARQUET: "Parquet file"}


def key_path(root: Path, kind: str, name: str) -> Path:
    """Where the key of segment or pack ``name`` lives; ``kind`` is SEGMENTS or PACKS."""
    return root / KEYS_DIR / kind / f"{name}.key"


class FileKeys:
    """The key files of one repository at ``root``, wrapped under the active key of the ring
    that ``ring_cipher`` holds (the one cipher every codec of the repository shares)."""

    def __init__(self, root: Path, repo_id: str, ring_cipher: AesGcm) -> None:
        self.root, self.repo_id, self.ring_cipher = root, repo_id, ring_cipher

    def __repr__(self) -> str:
        return f"FileKeys({str(self.root / KEYS_DIR)!r})"

    def path(self, kind: str, name: str) -> Path:
        """The key file of ``name``."""
        return key_path(self.root, kind, name)

    def cipher(self, kind: str, name: str) -> AesGcm:
        """A cipher for reading ``name``; its key file is read at the first frame that needs it."""
        return self.ring_cipher.for_file(lambda: self.load(kind, name))

    def writer_cipher(self, kind: str, name: str) -> AesGcm:
        """A cipher for appending to ``name``: its key file is read, or created when absent."""
        key = self.load(kind, name) if self.path(kind, name).exists() else self.create(kind, name)
        return self.ring_cipher.for_file(lambda: key)

    def create(self, kind: str, name: str) -> bytes:
        """A new random key for ``name``, durable in its key file before this returns."""
        key = os.urandom(KEY_BYTES)
        ring_id, sealed = self.ring_cipher.ring.wrap_file_key(key, self._label(kind, name))
        doc = {"version": KEY_FILE_VERSION, "wrapped_by": ring_id, "key": sealed}
        path = self.path(kind, name)
        try:
            make_dirs(path.parent)
            atomic_write(path, json.dumps(doc).encode(), mode=0o600)
        except OSError as exc:
            msg = f"cannot write key file {self._rel(path)}: {exc.strerror}"
            raise RepositoryError(msg) from exc
        return key

    def load(self, kind: str, name: str) -> bytes:
        """The key of ``name``; AuthError when its key file is gone or does not open."""
        path = self.path(kind, name)
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            raise AuthError(
                f"the key of {_LABELS[kind]} {name} ({self._rel(path)}) is gone: its data was "
                "deleted and the key destroyed (crypto-shredded), or the key file was lost"
            ) from None
        except ValueError as exc:
            raise CorruptionError(f"key file is not JSON: {exc}", path=self._rel(path)) from exc
        ring_id, sealed = _fields(doc, self._rel(path))
        return self.ring_cipher.ring.unwrap_file_key(ring_id, sealed, self._label(kind, name))

    def shred(self, kind: str, name: str) -> bool:
        """Destroy the key of ``name`` (see ``fsutil.shred``); whether it existed."""
        path = self.path(kind, name)
        try:
            return shred(path)
        except OSError as exc:
            msg = f"cannot destroy key file {self._rel(path)}: {exc.strerror}"
            raise RepositoryError(msg) from exc

    def _label(self, kind: str, name: str) -> str:
        return f"{self.repo_id}/{_LABELS[kind]}/{name}"

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()


def shred_key(root: Path, kind: str, name: str) -> bool:
    """Destroy a key file without the key ring (destroying needs no key)."""
    return shred(key_path(root, kind, name))


def key_names(root: Path, kind: str) -> list[str]:
    """Names of the key files of ``kind`` (temp files of an interrupted write skipped)."""
    directory = root / KEYS_DIR / kind
    if not directory.is_dir():
        return []
    return sorted(p.stem for p in directory.glob("[!.]*.key"))


def sync_key_dir(root: Path, kind: str) -> None:
    """fsync the key directory of ``kind`` if it exists (after removals)."""
    directory = root / KEYS_DIR / kind
    if directory.is_dir():
        fsync_dir(directory)


def _fields(doc: Any, rel: str) -> tuple[int, str]:
    try:
        if doc["version"] != KEY_FILE_VERSION:
            raise CorruptionError(f"unknown key file version {doc['version']!r}", path=rel)
        return int(doc["wrapped_by"]), str(doc["key"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptionError(f"key file is malformed: {exc}", path=rel) from exc
