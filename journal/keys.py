"""Encryption keys: the master secret, the key ring it unlocks, and key files on disk.

The master secret (a key file, a base64 key in an environment variable, or a passphrase)
never encrypts data itself. It derives a key-encryption key (HKDF for a random key, scrypt for
a passphrase) that unwraps the repository's random *data keys*; each data key has a small
integer id, so keys can rotate while old data stays readable. Data keys no longer encrypt
data directly: each segment and pack gets a random *file key*, wrapped under the active data
key (``wrap_file_key``), so destroying that small wrapped key destroys the file's data
(crypto-shredding). Frames written before file keys name a data key and stay readable. A
separate random *id key* makes chunk ids keyed hashes, so an id leaks nothing about content.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from journal.errors import AuthError, ConfigError, CorruptionError, RepositoryError

__all__ = [
    "KEY_BYTES",
    "KeyRing",
    "MasterSecret",
    "create_key_file",
    "read_key_file",
]

KEY_BYTES = 32
KEY_FILE_HEADER = "hindsight-key-v1"
MAX_RING_KEY_ID = 2**31 - 1  # ids from 2**31 on name a file's own key (codec.KEY_ID_FILE)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1


class MasterSecret:
    """A random 32-byte key or a passphrase; ``origin`` says where it came from, for errors.

    Deliberately not a dataclass: ``repr`` hides the secret, so no logger, traceback or
    pretty-printer can show it.
    """

    __slots__ = ("key", "origin", "passphrase")

    def __init__(
        self, key: bytes | None = None, passphrase: str | None = None, origin: str = ""
    ) -> None:
        self.key, self.passphrase, self.origin = key, passphrase, origin

    def __repr__(self) -> str:
        return f"MasterSecret(origin={self.origin!r})"

    @property
    def kdf(self) -> str:
        """Name of the derivation this secret needs."""
        return "scrypt" if self.passphrase is not None else "hkdf-sha256"

    @classmethod
    def from_base64(cls, text: str, origin: str) -> MasterSecret:
        """Parse a base64 key (as found in a key file or an environment variable)."""
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_BYTES:
            raise ConfigError(f"{origin} does not hold a base64 {KEY_BYTES}-byte key")
        return cls(key=key, origin=origin)


def create_key_file(path: Path) -> MasterSecret:
    """Write a new random key to ``path`` (mode 0600); refuse to overwrite an existing one."""
    key = os.urandom(KEY_BYTES)
    text = f"{KEY_FILE_HEADER}\n{base64.b64encode(key).decode()}\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"key file {path} already exists; refusing to overwrite it") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return MasterSecret(key=key, origin=f"key file {path}")


def read_key_file(path: Path) -> MasterSecret:
    """Read a key file written by ``create_key_file``."""
    try:
        lines = path.read_text().split()
    except FileNotFoundError:
        raise ConfigError(f"key file {path} not found; pass the right --key-file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from exc
    if len(lines) != 2 or lines[0] != KEY_FILE_HEADER:
        raise ConfigError(f"{path} is not a Hindsight key file")
    return MasterSecret.from_base64(lines[1], f"key file {path}")


class KeyRing:
    """The unwrapped data keys of one repository, plus its chunk-id key."""

    def __init__(self, keys: dict[int, bytes], active: int, id_key: bytes) -> None:
        self.keys = keys
        self.active = active
        self.id_key = id_key

    def __repr__(self) -> str:
        return f"KeyRing(ids={sorted(self.keys)}, active={self.active})"

    def key(self, key_id: int) -> bytes:
        """The data key with ``key_id``; AuthError when this ring does not have it."""
        try:
            return self.keys[key_id]
        except KeyError:
            raise AuthError(f"data key {key_id} is not in the key ring") from None

    def subkey(self, label: str) -> bytes:
        """A key for one purpose (e.g. the manifest MAC), derived from the id key."""
        info = b"hindsight subkey v1 " + label.encode()
        return HKDF(hashes.SHA256(), KEY_BYTES, None, info).derive(self.id_key)

    @classmethod
    def create(cls) -> KeyRing:
        """A fresh ring with one random data key (id 1) and a random id key."""
        return cls({1: os.urandom(KEY_BYTES)}, 1, os.urandom(KEY_BYTES))

    def rotated(self) -> KeyRing:
        """A ring with a new active data key; old keys stay for reading old frames."""
        new_id = max(self.keys) + 1
        if new_id > MAX_RING_KEY_ID:
            raise RepositoryError(f"the key ring cannot hold more than {MAX_RING_KEY_ID} keys")
        return KeyRing({**self.keys, new_id: os.urandom(KEY_BYTES)}, new_id, self.id_key)

    def wrap_file_key(self, key: bytes, label: str) -> tuple[int, str]:
        """Seal a file key under the active data key: (that key's id, base64 sealed key)."""
        return self.active, _seal(self.key(self.active), key, label)

    def unwrap_file_key(self, key_id: int, sealed: str, label: str) -> bytes:
        """Open a file key sealed by ``wrap_file_key``; AuthError when the tag fails."""
        try:
            key = _open(self.key(key_id), sealed, label)
        except InvalidTag:
            raise AuthError(
                f"file key {label!r} does not open under data key {key_id}: the key file was "
                "altered, or belongs to another file or repository"
            ) from None
        except ValueError as exc:  # bad base64 or a short value
            raise CorruptionError(f"file key {label!r} is malformed: {exc}") from exc
        if len(key) != KEY_BYTES:
            raise CorruptionError(f"file key {label!r} has {len(key)} bytes, not {KEY_BYTES}")
        return key

    def wrap(self, secret: MasterSecret, repo_id: str) -> dict[str, Any]:
        """The JSON document that stores this ring, sealed under ``secret``."""
        kdf = _new_kdf_params(secret)
        kek = _derive_kek(secret, kdf, repo_id)
        wrapped = {str(k): _seal(kek, v, f"{repo_id}/data/{k}") for k, v in self.keys.items()}
        return {
            "version": 1,
            "kdf": kdf,
            "active": self.active,
            "keys": wrapped,
            "id_key": _seal(kek, self.id_key, f"{repo_id}/id"),
        }

    @classmethod
    def unwrap(cls, doc: dict[str, Any], secret: MasterSecret, repo_id: str) -> KeyRing:
        """Open a ring document; AuthError when ``secret`` is not this repository's key."""
        try:
            kek = _derive_kek(secret, doc["kdf"], repo_id)
            keys = {int(k): _open(kek, v, f"{repo_id}/data/{k}") for k, v in doc["keys"].items()}
            id_key = _open(kek, doc["id_key"], f"{repo_id}/id")
            return cls(keys, int(doc["active"]), id_key)
        except (KeyError, TypeError, ValueError) as exc:
            raise RepositoryError(f"the repository's key ring is malformed: {exc}") from exc
        except InvalidTag:
            raise AuthError(
                f"{secret.origin or 'the given key'} does not unlock this repository "
                "(wrong key or passphrase)"
            ) from None


def _new_kdf_params(secret: MasterSecret) -> dict[str, Any]:
    salt = base64.b64encode(os.urandom(16)).decode()
    if secret.passphrase is not None:
        return {"name": "scrypt", "salt": salt, "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
    return {"name": "hkdf-sha256", "salt": salt}


def _derive_kek(secret: MasterSecret, kdf: dict[str, Any], repo_id: str) -> bytes:
    salt = base64.b64decode(kdf["salt"])
    if kdf["name"] != secret.kdf:
        need = "a passphrase" if kdf["name"] == "scrypt" else "a key file or key"
        raise AuthError(f"this repository is unlocked with {need}, not {secret.origin}")
    if secret.passphrase is not None:
        scrypt = Scrypt(salt=salt, length=KEY_BYTES, n=kdf["n"], r=kdf["r"], p=kdf["p"])
        return scrypt.derive(secret.passphrase.encode())
    assert secret.key is not None
    info = b"hindsight kek v1 " + repo_id.encode()
    return HKDF(hashes.SHA256(), KEY_BYTES, salt, info).derive(secret.key)


def _seal(kek: bytes, key: bytes, label: str) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + AESGCM(kek).encrypt(nonce, key, label.encode())).decode()


def _open(kek: bytes, sealed: str, label: str) -> bytes:
    raw = base64.b64decode(sealed)
    return AESGCM(kek).decrypt(raw[:12], raw[12:], label.encode())
