"""The append-only journal: Hindsight's vocabulary and its durable log.

Terms:
- *event*: one captured change (``ChangeEvent``): a document insert/update/delete, a file
  create/modify/move/delete, or a system marker, gap or checkpoint.
- *sequence number* (seq): the journal's gapless, strictly increasing number for an event.
- *position*: a source's own resume point (a change stream token), kept in each event.
- *frame*: a checksummed envelope; a journal frame holds one batch of events.
- *segment*: an append-only file of frames; *sealed* segments are immutable and their
  SHA-256 is recorded in the *manifest*.
- *first seq*: the first sequence number the journal still holds (1 until the oldest sealed
  segments are dropped with ``SegmentLog.drop_before``).
- *blob*: a file's content, stored as content-defined chunks packed into *pack* files;
  ``BlobStore.collect`` deletes what no live blob needs.
- *file key*: the random key one encrypted segment or pack is encrypted under, wrapped by
  the key ring (``FileKeys``); destroying it when the file is deleted *crypto-shreds* it.
- *checkpoint*: a named consumer's last processed sequence number.

This package imports no other Hindsight package.
"""

from journal.blobs import BlobRef, BlobStore, CollectReport
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
from journal.filekeys import FileKeys
from journal.integrity import Problem
from journal.keys import KeyRing, MasterSecret
from journal.log import DropReport, Durability, LogStats, SegmentLog
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
    "CollectReport",
    "ConfigError",
    "CorruptionError",
    "DropReport",
    "Durability",
    "EventSink",
    "FileImage",
    "FileKeys",
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
