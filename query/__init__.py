"""Query: DuckDB over the journal and snapshots: scans for lost or corrupted data, audit
reports and SQL over the change history. Imports ``journal`` and ``compaction``.
"""

__all__: list[str] = []
