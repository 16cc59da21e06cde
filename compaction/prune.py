"""Pruning: delete the backups retention lets go, then everything no kept restore point needs.

What must stay, given the backups kept (``needs``):

- every kept full backup's snapshot;
- every kept incremental's base snapshot and the journal from that snapshot's cut on;
- the point-in-time window: the newest snapshot at or before its start and the journal
  from that snapshot's cut on (from the first event if there is no such snapshot);
- the newest snapshot, which capture resumes from.

Everything else goes, in an order that keeps the repository consistent at every step: backup
records, then snapshot manifests, then journal segments (whose keys are shredded in an
encrypted repository) and their history files, then Parquet parts no manifest names, then
blob objects no kept snapshot or journal event references.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from compaction.backups import FULL, INCREMENTAL, Backup, BackupCatalog
from compaction.history import HistoryExport
from compaction.part_keys import key_index_file
from compaction.retention import RestorePoint, RetentionPolicy, Selection, select
from compaction.snapshot import PART_DIR, Snapshot
from compaction.snapshots import Snapshots
from compaction.tables import FILESYSTEM
from journal.errors import ConfigError
from journal.events import FileImage, Source, now_us
from journal.repository import Repository

__all__ = ["Needs", "PruneReport", "Pruner"]

RECENT_BLOB_S = 3600  # blobs put this recently may belong to events not yet appended


@dataclass
class Needs:
    """What the kept restore points and the point-in-time window need."""

    snapshots: set[str]
    first_seq: int  # the journal is needed from this seq on
    window_start_us: int


@dataclass
class PruneReport:
    """What a prune removed or, in a dry run, would remove."""

    dry_run: bool
    backups_removed: list[str] = field(default_factory=list)
    backups_kept: dict[str, list[str]] = field(default_factory=dict)
    snapshots_removed: list[str] = field(default_factory=list)
    segments_removed: list[str] = field(default_factory=list)
    events_removed: int = 0
    parts_removed: int = 0
    blob_objects_removed: int = 0
    bytes_freed: dict[str, int] = field(default_factory=dict)
    journal_from_seq: int = 1

    @property
    def total_freed(self) -> int:
        return sum(self.bytes_freed.values())


class Pruner:
    """Applies a retention policy to one repository (the caller holds ``catalog.locked()``)."""

    def __init__(
        self,
        repo: Repository,
        snapshots: Snapshots,
        catalog: BackupCatalog,
        policy: RetentionPolicy,
        *,
        history: HistoryExport | None = None,
        clock: Callable[[], int] = now_us,
        protect_recent_s: float = RECENT_BLOB_S,
    ) -> None:
        self.repo, self.snapshots, self.catalog = repo, snapshots, catalog
        self.policy, self.history, self.clock = policy, history, clock
        self.protect_recent_s = protect_recent_s

    def selection(self) -> Selection:
        """Which backups the policy keeps (with reasons) and which it removes."""
        points = [
            RestorePoint(b.id, b.created_us, "full" if b.type == FULL else "incremental")
            for b in self.catalog.all()
        ]
        return select(points, self.policy, self.clock())

    def prune(self, *, dry_run: bool = False) -> PruneReport:
        """Apply the policy: remove what it lets go and every byte nothing kept needs."""
        chosen = self.selection()
        report = PruneReport(dry_run, list(chosen.remove), chosen.keep)
        kept = [self.catalog.get(i) for i in chosen.keep]
        self._remove(kept, chosen.remove, report)
        return report

    def delete(self, backup_id: str, *, force: bool = False, dry_run: bool = False) -> PruneReport:
        """Delete one backup and free what only it needed.

        Refused when a kept incremental backup restores from it, unless ``force``.
        """
        backup = self.catalog.get(backup_id)
        dependents = [b.id for b in self.catalog.dependents(backup_id)]
        if dependents and not force:
            raise ConfigError(
                f"{backup_id} is the base of incremental backup(s) {', '.join(dependents)}, "
                "which restore from its snapshot: its data cannot be freed while they are "
                "kept. Delete them first, or pass --force to delete only this backup's record "
                "(its snapshot then stays until they go)"
            )
        kept = [b for b in self.catalog.all() if b.id != backup.id]
        report = PruneReport(dry_run, [backup_id], {b.id: ["kept"] for b in kept})
        self._remove(kept, [backup_id], report)
        return report

    # ------------------------------------------------------------------ planning
    def needs(self, kept: Iterable[Backup]) -> Needs:
        """What ``kept`` and the point-in-time window need (see the module docstring)."""
        all_snaps = [self.snapshots.catalog.load(i) for i in self.snapshots.catalog.ids()]
        by_id = {s.id: s for s in all_snaps}
        window_start = self.clock() - self.policy.point_in_time_s * 1_000_000
        needed: set[str] = set()
        starts: list[int] = []
        for backup in kept:
            if backup.type == FULL and backup.point.get("snapshot") in by_id:
                needed.add(str(backup.point["snapshot"]))
            elif backup.type == INCREMENTAL:
                base = self._base_snapshot(backup, by_id)
                if base is not None:
                    needed.add(base.id)
                starts.append(base.cut_seq + 1 if base else 1)
        window_base = _newest(s for s in all_snaps if s.cut_us <= window_start)
        if window_base is not None:
            needed.add(window_base.id)
        starts.append(window_base.cut_seq + 1 if window_base else 1)
        if all_snaps:
            needed.add(all_snaps[-1].id)  # capture resumes from the newest
            starts.append(all_snaps[-1].cut_seq + 1)
        return Needs(needed, min(starts), window_start)

    @staticmethod
    def _base_snapshot(backup: Backup, by_id: dict[str, Snapshot]) -> Snapshot | None:
        """The snapshot an incremental backup replays from (it outlives its base's record)."""
        return by_id.get(str(backup.point.get("base_snapshot")))

    # ------------------------------------------------------------------ removing
    def _remove(self, kept: list[Backup], remove: list[str], report: PruneReport) -> None:
        needs = self.needs(kept)
        report.journal_from_seq = needs.first_seq
        dry = report.dry_run
        if not dry:
            for backup_id in remove:
                self.catalog.delete(backup_id)
        doomed_snaps = [i for i in self.snapshots.catalog.ids() if i not in needs.snapshots]
        report.snapshots_removed = doomed_snaps
        if not dry:
            for snap_id in doomed_snaps:
                self.snapshots.catalog.delete(snap_id)
        dropped = self.repo.log.drop_before(needs.first_seq, dry_run=dry)
        report.segments_removed = list(dropped.segments)
        report.events_removed = dropped.events
        report.bytes_freed["journal"] = dropped.bytes
        if self.history is not None and not dry:
            removed = self.history.forget_before(needs.first_seq)
            report.bytes_freed["history"] = sum(h.size for h in removed)
        self._remove_parts(needs, report)
        self._collect_blobs(needs, report)

    def _remove_parts(self, needs: Needs, report: PruneReport) -> None:
        parts = self.snapshots.catalog.referenced_parts(sorted(needs.snapshots))
        used = parts | {key_index_file(p) for p in parts}
        folder = self.repo.root / PART_DIR
        unused = [
            f"{PART_DIR}/{p.name}"
            for p in (sorted(folder.iterdir()) if folder.is_dir() else [])
            if p.suffix in (".parquet", ".keys") and f"{PART_DIR}/{p.name}" not in used
        ]
        report.parts_removed = sum(1 for f in unused if f.endswith(".parquet"))
        freed = 0
        for file in unused:
            if report.dry_run:
                freed += (self.repo.root / file).stat().st_size
            else:
                freed += self.snapshots.parquet.delete(file)
        report.bytes_freed["snapshots"] = freed
        self.snapshots.parquet.orphan_keys(dry_run=report.dry_run)

    def _collect_blobs(self, needs: Needs, report: PruneReport) -> None:
        live = self._live_blobs(needs)
        result = self.repo.blobs.collect(
            live, dry_run=report.dry_run, protect_newer_than_s=self.protect_recent_s
        )
        report.blob_objects_removed = result.objects_removed
        report.bytes_freed["blobs"] = result.bytes_freed

    def _live_blobs(self, needs: Needs) -> set[str]:
        """Blobs that a needed snapshot or a kept journal event references."""
        live: set[str] = set()
        for snap_id in needs.snapshots:
            snap = self.snapshots.catalog.load(snap_id)
            for table in snap.tables.values():
                if table.ref.source == FILESYSTEM:
                    for batch in self.snapshots.rows(table, columns=["blob"]):
                        live.update(b for b in batch["blob"].to_pylist() if b)
        start = max(needs.first_seq, self.repo.log.first_seq)
        for batch in self.repo.log.read_batches(start):
            for e in batch:
                image = e.after if e.source is Source.FILESYSTEM else None
                if isinstance(image, FileImage) and image.blob:
                    live.add(image.blob)
        return live


def _newest(snaps: Iterable[Snapshot]) -> Snapshot | None:
    best = None
    for snap in snaps:
        if best is None or snap.cut_seq > best.cut_seq:
            best = snap
    return best
