"""Audit reports: fixed questions over the views, as results ready to print.

- ``changes``: data changes (inserts, updates, replaces, deletes; file creates, modifies,
  moves, deletes; not markers, checkpoints or gaps) counted by source, namespace, hour or
  day, with the distinct keys they touched.
- ``deletions``: every delete, with the size and time of the version it removed (the
  newest earlier event of the same key with an after-image).
- ``restores``: every recovery operation, oldest first.
- ``storage``: bytes by kind (``compaction.storage``, as ``hindsight backup storage``
  counts them) with what each kind holds.

Times are source timestamps, in UTC; ``since`` and ``until`` are microseconds since the
epoch (``since`` inclusive, ``until`` exclusive).
"""

from __future__ import annotations

from compaction.snapshots import snapshots_of
from compaction.storage import measure
from journal.errors import ConfigError
from query.engine import QueryEngine, Result

__all__ = ["CHANGE_OPS", "GROUPINGS", "Reports"]

CHANGE_OPS = ("INSERT", "UPDATE", "REPLACE", "DELETE", "CREATE", "MODIFY", "MOVE")
"""The ops that change data: what ``changes`` counts."""

GROUPINGS = {
    "source": ["source"],
    "ns": ["source", "deployment", "namespace"],
    "hour": ["date_trunc('hour', source_ts) AS hour"],
    "day": ["date_trunc('day', source_ts) AS day"],
}
"""``changes --by`` choices and the columns each groups on."""


def _window(since: int | None, until: int | None, column: str = "source_ts") -> list[str]:
    """SQL conditions for ``since <= column < until`` (microseconds; ints, so no injection)."""
    conditions = []
    if since is not None:
        conditions.append(f"{column} >= make_timestamptz({int(since)}::BIGINT)")
    if until is not None:
        conditions.append(f"{column} < make_timestamptz({int(until)}::BIGINT)")
    return conditions


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class Reports:
    """The audit reports of one ``QueryEngine``."""

    def __init__(self, engine: QueryEngine) -> None:
        self.engine = engine

    def changes(self, since: int | None = None, until: int | None = None, by: str = "ns") -> Result:
        """Changes per group of ``GROUPINGS[by]``: created, modified, deleted, distinct keys."""
        if by not in GROUPINGS:
            raise ConfigError(f"unknown grouping {by!r}; use one of {', '.join(GROUPINGS)}")
        where = " AND ".join([f"op IN {_in(CHANGE_OPS)}", *_window(since, until)])
        return self.engine.sql(
            f"SELECT {', '.join(GROUPINGS[by])}, count(*) AS changes, "
            "count(*) FILTER (WHERE op IN ('INSERT', 'CREATE')) AS created, "
            "count(*) FILTER (WHERE op IN ('UPDATE', 'REPLACE', 'MODIFY', 'MOVE')) AS modified, "
            "count(*) FILTER (WHERE op = 'DELETE') AS deleted, "
            "count(DISTINCT key) AS keys "
            f"FROM events WHERE {where} GROUP BY ALL ORDER BY ALL"
        )

    def deletions(self, since: int | None = None, until: int | None = None) -> Result:
        """Every delete in the window, oldest first, with the version it removed.

        ``what`` is ``document`` or ``file``, or ``namespace`` for an event with an empty
        key (a dropped collection or database). ``last_size`` and ``last_written`` are
        NULL when the journal kept no earlier version (it was pruned, or never captured).
        """
        where = " AND ".join(["op = 'DELETE'", *_window(since, until)])
        same_key = (
            "e.source = k.source AND coalesce(e.deployment, '') = k.dep "
            "AND e.namespace = k.namespace AND e.key = k.key"
        )
        before = "PARTITION BY source, deployment, namespace, key ORDER BY seq " + (
            "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"
        )
        return self.engine.sql(
            "WITH k AS (SELECT DISTINCT source, coalesce(deployment, '') AS dep, namespace, key "
            f"FROM events WHERE {where}), "
            f"h AS (SELECT e.* FROM events e SEMI JOIN k ON {same_key}), "
            "w AS (SELECT *, "
            f"last_value(size IGNORE NULLS) OVER ({before}) AS last_size, "
            "last_value(CASE WHEN size IS NOT NULL THEN source_ts END IGNORE NULLS) "
            f"OVER ({before}) AS last_written FROM h) "
            "SELECT seq, source_ts AS time, source, deployment, namespace, key, "
            "CASE WHEN key = '' THEN 'namespace' WHEN source = 'MONGODB' THEN 'document' "
            "ELSE 'file' END AS what, last_size, last_written, txn "
            f"FROM w WHERE {where} ORDER BY seq"
        )

    def restores(self) -> Result:
        """Every recovery operation, oldest first."""
        return self.engine.sql(
            "SELECT operation_id, status, backup_id, moment, started_at, completed_at, "
            "coalesce(target, to_db, to_collection) AS target, dry_run, restored, failed, "
            "skipped, conflicts, len(errors) AS errors, before_seq "
            "FROM recoveries ORDER BY started_at, operation_id"
        )

    def storage(self) -> Result:
        """Bytes by kind, their share of the total, and what each kind holds."""
        repo = self.engine.repo
        snapshots = snapshots_of(repo)
        by_kind = measure(repo, snapshots, ratios=False).by_kind
        total = sum(by_kind.values()) or 1
        journal = repo.log.stats()
        history = self.engine.sources.files
        items: dict[str, tuple[int | None, str | None, int | None]] = {
            "journal": (journal.segments, "segments", journal.events),
            "snapshots": (len(snapshots.catalog.ids()), "snapshots", None),
            "blobs": (repo.blobs.stats().blobs, "file contents", None),
            "history": (len(history), "files", sum(f.rows for f in history)),
        }
        rows = [
            (kind, size, round(size / total, 4), *items.get(kind, (None, None, None)))
            for kind, size in by_kind.items()
        ]
        rows.append(("total", sum(by_kind.values()), 1.0, None, None, None))
        columns = ["kind", "bytes", "share", "items", "item", "events"]
        types = ["VARCHAR", "BIGINT", "DOUBLE", "BIGINT", "VARCHAR", "BIGINT"]
        return Result.of(columns, types, rows)
