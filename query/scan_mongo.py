"""Scanning one MongoDB deployment: the live collections against what the journal knows.

Three checks: a protected collection the journal knows that no longer exists (dropped,
whether or not capture saw the drop); a collection holding fewer documents, by more than a
configured share, than it did at the newest snapshot; many documents deleted within the
recent window and not written since (deletes capture recorded). Only a collection no
snapshot has is counted from the journal's rows; the live side is counted by the server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from compaction.state_at import StateAt
from compaction.tables import MONGODB
from query.findings import Finding, RestorePoint
from query.scan_journal import Loss, Recent, RestorePoints, collection_table

__all__ = ["LiveDeployment", "MongoReport", "MongoScan"]


@dataclass(frozen=True)
class LiveDeployment:
    """What a deployment holds now: its protected collections and their document counts
    (``connected`` False, with ``error``, when it could not be reached)."""

    name: str
    connected: bool
    counts: dict[str, int] = field(default_factory=dict)  # "db.coll" -> documents
    protected: Callable[[str], bool] = lambda _ns: True
    error: str = ""


@dataclass
class MongoReport:
    """What scanning one deployment found."""

    found: int = 0
    missing: int = 0
    documents: int = 0
    findings: list[Finding] = field(default_factory=list)


class MongoScan:
    """The checks for one deployment."""

    def __init__(
        self,
        live: LiveDeployment,
        state: StateAt,
        recent: Recent,
        points: RestorePoints,
        *,
        drop_percent: int,
        bulk_threshold: int,
        window: str,
    ) -> None:
        self.live, self.state, self.recent, self.points = live, state, recent, points
        self.drop_percent, self.bulk_threshold, self.window = drop_percent, bulk_threshold, window
        self.report = MongoReport()

    def run(self) -> MongoReport:
        live, report = self.live, self.report
        if not live.connected:
            reason = f"cannot be reached, so it was not checked: {live.error}"
            report.findings.append(
                Finding("mongodb", "unreachable", live.name, "", reason, "deployment")
            )
            return report
        report.found, report.documents = len(live.counts), sum(live.counts.values())
        known = self._known()
        bulky = self._bulk()
        for namespace, count in sorted(known.items()):
            if namespace not in live.counts:
                self._missing(namespace, count)
            elif namespace not in bulky:
                self._dropped_count(namespace, count, live.counts[namespace])
        return report

    # --------------------------------------------------------------- what is known
    def _known(self) -> dict[str, int]:
        """Protected collections the journal knows, with the documents each held: in the
        newest snapshot, or (a collection it lacks) at the journal's end; a collection
        dropped in the window and in neither: 0."""
        name, protected = self.live.name, self.live.protected
        known: dict[str, int] = {}
        snap = self.state.snapshot
        for entry in snap.tables.values() if snap else ():
            ref = entry.ref
            if ref.source == MONGODB and ref.deployment == name and protected(ref.namespace):
                known[ref.namespace] = entry.rows
        for view in self.state.tables:
            ref = view.ref
            if ref.source != MONGODB or ref.deployment != name or not protected(ref.namespace):
                continue
            if snap is None or ref.id not in snap.tables:  # only then read: it costs
                known[ref.namespace] = sum(b.num_rows for b in self.state.rows(view))
        for (deployment, namespace), _ in self.recent.dropped.items():
            if deployment == name and protected(namespace):
                known.setdefault(namespace, 0)
        return {ns: n for ns, n in known.items() if n > 0 or self._drop(ns)}

    def _drop(self, namespace: str) -> Loss | None:
        """The captured drop of ``namespace`` (or of its database) in the window, if any."""
        name = self.live.name
        db = namespace.partition(".")[0]
        return self.recent.dropped.get((name, namespace)) or self.recent.dropped_dbs.get((name, db))

    # ------------------------------------------------------------------ findings
    def _missing(self, namespace: str, count: int) -> None:
        drop = self._drop(namespace)
        table = collection_table(self.live.name, namespace)
        if drop is not None:
            reason = f"collection dropped; captured at seq {drop.seq}"
            points = self.points.holding_table(table, drop.seq, drop.capture_ts)
        else:
            reason = f"collection missing (it held {count} documents); its drop was not captured"
            points = self.points.holding_table(table, None, None)
        self.report.missing += 1
        self._add("collection_missing", namespace, reason, points)

    def _bulk(self) -> set[str]:
        """Collections with at least the threshold of documents deleted in the window."""
        found = set()
        for (deployment, namespace), bulk in sorted(self.recent.bulk.items()):
            if deployment != self.live.name or bulk.count < self.bulk_threshold:
                continue
            if not self.live.protected(namespace) or namespace not in self.live.counts:
                continue
            reason = (
                f"{bulk.count} documents deleted in the last {self.window} and not written "
                f"since (threshold {self.bulk_threshold}); the first at seq {bulk.first_seq}"
            )
            table = collection_table(self.live.name, namespace)
            points = self.points.holding_table(table, bulk.first_seq, bulk.first_us)
            self._add("bulk_delete", namespace, reason, points)
            found.add(namespace)
        return found

    def _dropped_count(self, namespace: str, known: int, live: int) -> None:
        if known <= 0 or (known - live) * 100 <= known * self.drop_percent:
            return
        reason = (
            f"holds {live} documents, {known - live} fewer than the {known} the journal knew "
            f"(more than {self.drop_percent}% gone)"
        )
        bulk = self.recent.bulk.get((self.live.name, namespace))
        table = collection_table(self.live.name, namespace)
        if bulk is not None:
            points = self.points.holding_table(table, bulk.first_seq, bulk.first_us)
        else:
            points = self.points.holding_table(table, None, None)
        self._add("count_drop", namespace, reason, points)

    def _add(self, kind: str, namespace: str, reason: str, points: list[RestorePoint]) -> None:
        seen = points[0].time_us if points else None
        finding = Finding(
            "mongodb", kind, self.live.name, namespace, reason, "collection", seen, points
        )
        self.report.findings.append(finding)
