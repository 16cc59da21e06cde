"""Names of ``meta`` keys and markers that more than one package reads (see FORMAT.md).

Capture writes them; compaction, restore and query interpret them. They are part of the
repository format, so they live with the journal's vocabulary rather than in any one source.
"""

from __future__ import annotations

__all__ = [
    "ALL_SCOPE",
    "COLLECTION_MARKER",
    "META_CTIME",
    "META_DEPLOYMENT",
    "META_INODE",
    "META_OLD_PATH",
    "META_OP",
    "META_STREAM",
    "META_TO",
    "META_TXN_END",
    "RESTORE_NAMESPACE",
    "RESTORE_START",
    "META_OPERATION",
    "SYNC_END",
    "SYNC_START",
]

# MongoDB events
META_DEPLOYMENT = "deployment"  # the [[sources.mongodb]] name an event came from
META_OP = "mongo_op"  # the change stream's operationType ("sync" for a copied document)
META_STREAM = "stream"  # the stream scope of a collection-scoped stream
META_TO = "to"  # a rename's new namespace
META_TXN_END = "txn_end"  # on the last event of a transaction
ALL_SCOPE = "*"  # the stream scope that watches a whole deployment
SYNC_START = "sync-start"  # marker: an initial copy begins; what is known is replaced
SYNC_END = "sync-end"  # marker: the copy is complete
COLLECTION_MARKER = "collection"  # marker: a collection's options and indexes

# File events
META_OLD_PATH = "old_path"  # a move's previous path
META_INODE = "ino"  # the inode seen at capture, for stat-only change detection
META_CTIME = "ctime"  # st_ctime_ns when the content was read: a scan's silent-change check

# System markers
RESTORE_NAMESPACE = "recover"  # the namespace of a restore's markers
RESTORE_START = "restore-start"  # marker: a restore begins writing; what precedes it is "before"
META_OPERATION = "operation"  # the recovery operation a marker belongs to
