"""Compaction: periodic full snapshots (Parquet), backups, retention and verification.

A *snapshot* is the full state of every protected item as of one sequence number; a
*retention* policy decides which snapshots and segments to keep. Imports only ``journal``.
"""

__all__: list[str] = []
