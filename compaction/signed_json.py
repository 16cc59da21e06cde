"""JSON documents that name other files: written atomically, MAC'd in an encrypted repository.

A snapshot manifest or a backup record lists SHA-256s of the files it relies on; the HMAC
(under a key derived from the repository's id key) makes the list itself tamper-evident, so
the chain from document to every byte it names is authenticated. Without encryption the MAC
is null and the checksums still catch damage.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from journal.errors import CorruptionError, NotFound
from journal.protocols import Store

__all__ = ["load_document", "save_document"]


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes, doc: dict[str, Any]) -> str:
    return hmac.new(key, _canonical(doc), hashlib.sha256).hexdigest()


def save_document(store: Store, key: str, doc: dict[str, Any], mac_key: bytes | None) -> None:
    """Write ``doc`` (with its ``mac``) to ``key`` atomically."""
    signed = {**doc, "mac": _mac(mac_key, doc) if mac_key else None}
    store.put(key, json.dumps(signed, indent=1, sort_keys=True).encode())


def load_document(store: Store, key: str, mac_key: bytes | None) -> dict[str, Any]:
    """Read and check a document; NotFound if absent, CorruptionError if damaged or edited."""
    raw = store.get(key)
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        raise CorruptionError(f"not valid JSON: {exc}", path=key) from exc
    if mac_key is not None and not hmac.compare_digest(doc.get("mac") or "", _mac(mac_key, doc)):
        raise CorruptionError("MAC does not verify: the file was edited or damaged", path=key)
    return doc


def exists(store: Store, key: str) -> bool:
    """Whether ``key`` exists."""
    try:
        store.stat(key)
    except NotFound:
        return False
    return True
