"""The append-only journal: Hindsight's vocabulary and its durable log.

Terms:
- *event*: one captured change (``ChangeEvent``): a document insert/update/delete, a file
  create/modify/move/delete, or a system marker, gap or checkpoint.
- *sequence number* (seq): the journal's gapless, strictly increasing number for an event.
- *position*: a source's own resume point (a change stream token), kept in each event.
- *frame*: a checksummed envelope; a journal frame holds one batch of events.
- *segment*: an append-only file of frames; *sealed* segments are immutable and their
  SHA-256 is recorded in the *manifest*.
- *blob*: a file's content, stored as content-defined chunks packed into *pack* files.
- *checkpoint*: a named consumer's last processed sequence number.

This package imports no other Hindsight package.
"""

from journal.blobs import BlobRef, BlobStore
from journal.checkpoints import Checkpoints
from journal.codec import AesGcm, Codec, Zstd
from journal.errors import (
    AuthError,
    ConfigError,
    CorruptionError,
    HindsightError,
    NotFound,
    RepositoryError,
    SourceUnavailable,
)
from journal.events import ChangeEvent, FileImage, Op, SeqRange, Source, now_us
from journal.integrity import Problem
from journal.keys import KeyRing, MasterSecret
from journal.log import Durability, LogStats, SegmentLog
from journal.protocols import EventSink, Store, StoreStat
from journal.repository import Repository
from journal.verify import JournalReport, verify_journal

__all__ = [
    "AesGcm",
    "AuthError",
    "BlobRef",
    "BlobStore",
    "ChangeEvent",
    "Checkpoints",
    "Codec",
    "ConfigError",
    "CorruptionError",
    "Durability",
    "EventSink",
    "FileImage",
    "HindsightError",
    "JournalReport",
    "KeyRing",
    "LogStats",
    "MasterSecret",
    "NotFound",
    "Op",
    "Problem",
    "Repository",
    "RepositoryError",
    "SegmentLog",
    "SeqRange",
    "Source",
    "SourceUnavailable",
    "Store",
    "StoreStat",
    "Zstd",
    "now_us",
    "verify_journal",
]
