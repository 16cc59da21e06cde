"""Query: DuckDB over the journal and snapshots: scans for lost or corrupted data, audit
reports and SQL over the change history. Imports ``journal`` and ``compaction``.

Terms:

- *event*: one journal event as history records it, without its after-image (seq, times,
  source, deployment, namespace, key, op, size and hash of the image, ...): a row of a
  history file (``compaction.history``) or of the journal's *tail*, the events no history
  file holds yet (the active segment, and sealed segments not exported yet).
- *view*: a read-only table ``hindsight sql`` offers (``events``, ``snapshots``,
  ``snapshot_tables``, ``backups``, ``blobs``, ``recoveries``; ``query.views``), made by a
  ``QueryEngine`` in an in-memory DuckDB over one repository.
- *report*: a fixed audit question over the views (changes, deletions, restores, storage;
  ``Reports``), printed like any query result.
- *scan*: live sources (files, collections, git work trees) against the journal's state at
  its end (``Scanner``); each *finding* (lost or corrupted file, missing collection, count
  drop, bulk deletion) names its *restore points*: backups, a moment for ``--at``, a commit.
"""

from query.duplicates import DuplicateReport, find_duplicates
from query.engine import QueryEngine, Result
from query.readonly import check_statement
from query.reports import Reports
from query.scan import Scanner, ScanResult, ScanSettings
from query.views import VIEWS, Column, View, describe_views

__all__ = [
    "VIEWS",
    "Column",
    "DuplicateReport",
    "QueryEngine",
    "Reports",
    "Result",
    "ScanResult",
    "ScanSettings",
    "Scanner",
    "View",
    "check_statement",
    "describe_views",
    "find_duplicates",
]
