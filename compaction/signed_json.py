"""JSON documents that name other files: written atomically, checksummed or encrypted.

A snapshot manifest or a backup record lists SHA-256s of the files it relies on. In clear,
its own ``sha256`` (of the canonical JSON of everything else) catches any damage to the
document itself. In an encrypted repository the document is sealed with AES-256-GCM
(``"HSJE" | u8 version 1 | u32 key id | nonce | ciphertext | tag``, the first 9 bytes and the
document's path as associated data): collection names, counts and paths stay private, and
the chain from document to every byte it names is authenticated.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from journal.codec import AesGcm
from journal.errors import AuthError, CorruptionError, NotFound
from journal.protocols import Store

__all__ = ["load_document", "save_document"]


SEALED_MAGIC = b"HSJE"
SEALED_HEADER = struct.Struct("<4sBI")


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def save_document(store: Store, key: str, doc: dict[str, Any], cipher: AesGcm | None) -> None:
    """Write ``doc`` to ``key`` atomically: sealed with ``cipher``, else with its checksum."""
    if cipher is not None:
        header = SEALED_HEADER.pack(SEALED_MAGIC, 1, cipher.key_id)
        body = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        store.put(key, header + cipher.encrypt(body, header + key.encode()))
        return
    checksum = hashlib.sha256(_canonical(doc)).hexdigest()
    store.put(key, json.dumps({**doc, "sha256": checksum}, indent=1, sort_keys=True).encode())


def load_document(store: Store, key: str, cipher: AesGcm | None) -> dict[str, Any]:
    """Read and check a document; NotFound if absent, CorruptionError if damaged or edited."""
    raw = store.get(key)
    if raw.startswith(SEALED_MAGIC):
        raw = _open_sealed(raw, key, cipher)
    elif cipher is not None:
        raise CorruptionError("not encrypted, in an encrypted repository (replaced?)", path=key)
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise CorruptionError(f"not valid JSON: {exc}", path=key) from exc
    if cipher is None and doc.get("sha256") != hashlib.sha256(_canonical(doc)).hexdigest():
        raise CorruptionError("checksum does not match: the file is damaged", path=key)
    return doc


def _open_sealed(raw: bytes, key: str, cipher: AesGcm | None) -> bytes:
    if cipher is None:
        raise AuthError(f"{key} is encrypted; open the repository with its key")
    if len(raw) < SEALED_HEADER.size:
        raise CorruptionError("sealed document is truncated", path=key)
    _, version, key_id = SEALED_HEADER.unpack_from(raw)
    header = raw[: SEALED_HEADER.size]
    if version != 1:
        raise CorruptionError(f"unknown sealed document version {version}", path=key)
    try:
        return cipher.decrypt(key_id, raw[SEALED_HEADER.size :], header + key.encode())
    except AuthError as exc:
        raise CorruptionError(f"does not authenticate: {exc.reason}", path=key) from exc


def exists(store: Store, key: str) -> bool:
    """Whether ``key`` exists."""
    try:
        store.stat(key)
    except NotFound:
        return False
    return True
