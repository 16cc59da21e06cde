"""The change event: the one record every source writes and every reader replays.

Events are immutable named tuples: cheap to build in bulk (a reader makes hundreds of
thousands a second) and comparable field by field.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["ChangeEvent", "FileImage", "Op", "SeqRange", "Source", "now_us"]


class Source(enum.Enum):
    """Where a change came from."""

    MONGODB = "MONGODB"
    FILESYSTEM = "FILESYSTEM"
    SYSTEM = "SYSTEM"


class Op(enum.Enum):
    """What happened: document ops, file ops, then system events."""

    INSERT = "INSERT"
    UPDATE = "UPDATE"
    REPLACE = "REPLACE"
    DELETE = "DELETE"
    CREATE = "CREATE"
    MODIFY = "MODIFY"
    MOVE = "MOVE"
    MARKER = "MARKER"
    GAP = "GAP"
    CHECKPOINT = "CHECKPOINT"


class FileImage(NamedTuple):
    """A file's state after a change: metadata plus a pointer to its content in the blob store.

    ``blob`` is empty for symlinks (``link_target`` set instead).
    """

    blob: str
    size: int
    sha256: str
    mode: int
    mtime_ns: int
    link_target: str | None = None


class ChangeEvent(NamedTuple):
    """One change, as captured.

    ``after`` is the document image (BSON bytes) for MongoDB, a ``FileImage`` for files, and
    ``None`` for deletions and system events. ``position`` is the source's opaque resume
    position (a change stream resume token, say); ``txn`` a transaction id or ``""``.
    Timestamps are microseconds since the Unix epoch, UTC. The journal assigns ``seq`` on
    append, and stamps ``capture_ts`` then if the source left it 0. An empty ``meta`` reads
    back as None; a document image is never empty (the smallest BSON document is 5 bytes).
    """

    source: Source
    namespace: str
    key: str
    op: Op
    source_ts: int
    after: bytes | FileImage | None = None
    position: bytes = b""
    txn: str = ""
    meta: Mapping[str, str] | None = None
    capture_ts: int = 0
    seq: int = 0


class SeqRange(NamedTuple):
    """The inclusive range of sequence numbers an append was given."""

    first: int
    last: int

    @property
    def event_count(self) -> int:
        """How many sequence numbers the range holds."""
        return self.last - self.first + 1


def now_us() -> int:
    """The current UTC time in microseconds since the epoch."""
    return time.time_ns() // 1000
