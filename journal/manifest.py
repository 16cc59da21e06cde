"""The manifest: which segments are sealed, their event ranges, time spans and SHA-256.

Written atomically after the segment and its index are durable, so anything the manifest
names exists. In an encrypted repository it carries an HMAC-SHA256 under a key derived from
the repository's id key, so it cannot be edited unnoticed either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, NamedTuple

from journal.errors import CorruptionError, NotFound
from journal.protocols import Store

__all__ = ["MANIFEST_KEY", "Manifest", "SegmentInfo"]

MANIFEST_KEY = "journal/manifest.json"
MANIFEST_FORMAT = 1


class SegmentInfo(NamedTuple):
    """One sealed segment as the manifest records it."""

    name: str
    first_seq: int
    last_seq: int
    size: int
    sha256: str
    min_ts: int
    max_ts: int
    sealed_us: int

    @property
    def event_count(self) -> int:
        """Events in the segment."""
        return self.last_seq - self.first_seq + 1


class Manifest:
    """The list of sealed segments, in sequence order."""

    def __init__(self, segments: list[SegmentInfo] | None = None) -> None:
        self.segments = segments or []

    @property
    def last_seq(self) -> int:
        """Last sequence number in a sealed segment (0 when none)."""
        return self.segments[-1].last_seq if self.segments else 0

    @classmethod
    def load(cls, store: Store, mac_key: bytes | None) -> Manifest:
        """Read and check the manifest; an absent manifest is an empty one."""
        try:
            raw = store.get(MANIFEST_KEY)
        except NotFound:
            return cls()
        try:
            doc = json.loads(raw)
            body = _canonical(doc["segments"])
            segments = [SegmentInfo(**s) for s in doc["segments"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"manifest is malformed: {exc}", path=MANIFEST_KEY) from exc
        if mac_key is not None and not hmac.compare_digest(
            doc.get("mac") or "", _mac(mac_key, body)
        ):
            raise CorruptionError("manifest MAC does not verify (edited?)", path=MANIFEST_KEY)
        return cls(segments)

    def save(self, store: Store, mac_key: bytes | None) -> None:
        """Write the manifest atomically."""
        segments = [s._asdict() for s in self.segments]
        doc: dict[str, Any] = {"format": MANIFEST_FORMAT, "segments": segments}
        doc["mac"] = _mac(mac_key, _canonical(segments)) if mac_key else None
        store.put(MANIFEST_KEY, json.dumps(doc, indent=1).encode())


def _canonical(segments: Any) -> bytes:
    return json.dumps(segments, sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()
