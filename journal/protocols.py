"""The small interfaces the rest of Hindsight programs against."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from journal.events import ChangeEvent, SeqRange

__all__ = ["BlobRef", "BlobSink", "EventSink", "Readable", "Store", "StoreStat"]


@dataclass(frozen=True, slots=True)
class StoreStat:
    """Size and modification time of one stored object."""

    key: str
    size: int
    mtime_ns: int


class Store(Protocol):
    """A flat namespace of immutable-ish objects under '/'-separated keys.

    Contract, for every backend:
    - ``put`` is atomic: a reader sees the old object or the whole new one, never part; once
      it returns the object is durable. Putting the same key again replaces it.
    - ``get`` and ``stat`` raise ``journal.errors.NotFound`` for a missing key.
    - ``delete`` of a missing key is not an error (idempotent).
    - ``list`` yields keys under ``prefix`` in lexicographic order.
    - Backend failures are raised as ``RepositoryError`` (permanent) with the key named.
    """

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically and durably."""
        ...

    def get(self, key: str) -> bytes:
        """The object under ``key``."""
        ...

    def stat(self, key: str) -> StoreStat:
        """Size and mtime of the object under ``key``."""
        ...

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, sorted."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...


@dataclass(frozen=True, slots=True)
class BlobRef:
    """A stored content: ``id`` names it in the blob store; ``sha256`` (hex) is of the content."""

    id: str
    size: int
    sha256: str


class Readable(Protocol):
    """Anything with ``read(n)``: an open file, a socket file, ``io.BytesIO``."""

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes; ``b""`` at the end."""
        ...


class BlobSink(Protocol):
    """Where capture puts file contents before it appends the events that point to them.

    ``put_stream`` reads ``f`` to its end in bounded memory and returns the content's
    reference; the content is durable only after ``flush`` returns, so a caller flushes
    before appending an event that names the blob. Errors reading ``f`` propagate unchanged.
    """

    def put_stream(self, f: Readable, *, secret: bool = False) -> BlobRef:
        """Store the content read from ``f``; ``secret`` for files classed as secrets.

        A secret content is always stored encrypted, even in a repository that encrypts
        nothing else. Where the journal is not encrypted, its ``BlobRef.sha256`` is ``""``:
        the hash would otherwise sit in clear in the journal and confirm a guessed content
        (the real hash stays inside the encrypted blob). Storing a secret raises AuthError
        when the repository's key was not given, RepositoryError when the repository has
        no key ring at all.
        """
        ...

    def flush(self) -> None:
        """Make every content stored so far durable."""
        ...


class EventSink(Protocol):
    """Where capture sources put events. Returns once the events are durable (acknowledged)."""

    def append(self, events: Sequence[ChangeEvent]) -> SeqRange:
        """Append ``events`` in order and return the sequence numbers they were given."""
        ...
