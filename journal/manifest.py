"""The manifest: which segments are sealed, their event ranges, time spans and SHA-256.

Written atomically after the segment and its index are durable, so anything the manifest
names exists. In an encrypted repository it carries an HMAC-SHA256 under a key derived from
the repository's id key, so it cannot be edited unnoticed either.

``first_seq`` is the first sequence number the journal still holds: 1 until old segments are
dropped. It is written (and then covered by the MAC) only once it is not 1, so a manifest of
a journal that never dropped anything is byte-for-byte what older versions wrote.
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
    """The list of sealed segments, in sequence order, and where the journal now starts."""

    def __init__(self, segments: list[SegmentInfo] | None = None, first_seq: int = 1) -> None:
        self.segments = segments or []
        self.first_seq = first_seq

    @property
    def last_seq(self) -> int:
        """Last sequence number in a sealed segment (``first_seq - 1`` when none)."""
        return self.segments[-1].last_seq if self.segments else self.first_seq - 1

    @classmethod
    def load(cls, store: Store, mac_key: bytes | None) -> Manifest:
        """Read and check the manifest; an absent manifest is an empty one."""
        try:
            raw = store.get(MANIFEST_KEY)
        except NotFound:
            return cls()
        try:
            doc = json.loads(raw)
            body = _canonical(doc)
            segments = [SegmentInfo(**s) for s in doc["segments"]]
            first_seq = int(doc.get("first_seq", 1))
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"manifest is malformed: {exc}", path=MANIFEST_KEY) from exc
        if mac_key is not None and not hmac.compare_digest(
            doc.get("mac") or "", _mac(mac_key, body)
        ):
            raise CorruptionError("manifest MAC does not verify (edited?)", path=MANIFEST_KEY)
        if first_seq < 1 or (segments and segments[0].first_seq < first_seq):
            raise CorruptionError(f"manifest first_seq {first_seq} is wrong", path=MANIFEST_KEY)
        return cls(segments, first_seq)

    def save(self, store: Store, mac_key: bytes | None) -> None:
        """Write the manifest atomically."""
        doc: dict[str, Any] = {"format": MANIFEST_FORMAT}
        if self.first_seq != 1:
            doc["first_seq"] = self.first_seq
        doc["segments"] = [s._asdict() for s in self.segments]
        doc["mac"] = _mac(mac_key, _canonical(doc)) if mac_key else None
        store.put(MANIFEST_KEY, json.dumps(doc, indent=1).encode())


def _canonical(doc: dict[str, Any]) -> bytes:
    """What the MAC covers: the segment list alone (as before first_seq existed), or, when
    ``first_seq`` is present, ``{"first_seq": N, "segments": [...]}``: removing or changing
    it then breaks the MAC."""
    covered: Any = doc["segments"]
    if "first_seq" in doc:
        covered = {"first_seq": doc["first_seq"], "segments": doc["segments"]}
    return json.dumps(covered, sort_keys=True, separators=(",", ":")).encode()


def _mac(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()
