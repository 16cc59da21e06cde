"""Storage use: bytes by kind, compression and deduplication ratios, quota.

Kinds: ``journal`` (segments and indexes), ``snapshots`` (manifests and Parquet parts),
``blobs`` (packs and indexes of file contents), ``history`` (Parquet event history),
``other`` (keys, backup records, checkpoints). The ratios use what the repository already
knows: the blob store's raw chunk bytes against its stored bytes (compression), and the
logical size of every restorable file version against the unique raw bytes (deduplication).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from compaction.snapshots import Snapshots
from compaction.tables import FILESYSTEM
from journal.events import FileImage
from journal.repository import Repository

__all__ = ["StorageReport", "measure", "parse_size"]

KINDS = {"journal": "journal", "snapshots": "snapshots", "blobs": "blobs", "history": "history"}
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass
class StorageReport:
    """Bytes on disk by kind, ratios, and the quota (0 = none)."""

    by_kind: dict[str, int] = field(default_factory=dict)
    blob_raw_bytes: int = 0
    blob_stored_bytes: int = 0
    file_versions_bytes: int = 0
    quota_bytes: int = 0

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    @property
    def compression_ratio(self) -> float | None:
        """Raw bytes per stored byte of file contents (> 1: compression saved space)."""
        if not self.blob_stored_bytes:
            return None
        return round(self.blob_raw_bytes / self.blob_stored_bytes, 2)

    @property
    def dedup_ratio(self) -> float | None:
        """Bytes of every restorable file version per unique raw byte stored."""
        if not self.blob_raw_bytes:
            return None
        return round(self.file_versions_bytes / self.blob_raw_bytes, 2)

    @property
    def quota_used(self) -> float | None:
        """Fraction of the quota in use, or None without a quota."""
        return round(self.total / self.quota_bytes, 4) if self.quota_bytes else None

    @property
    def over_quota(self) -> bool:
        return bool(self.quota_bytes) and self.total > self.quota_bytes

    def to_dict(self) -> dict[str, object]:
        return {
            "total_bytes": self.total,
            "by_kind": self.by_kind,
            "compression_ratio": self.compression_ratio,
            "dedup_ratio": self.dedup_ratio,
            "quota_bytes": self.quota_bytes or None,
            "quota_used": self.quota_used,
            "over_quota": self.over_quota,
        }


def measure(
    repo: Repository, snapshots: Snapshots, quota_bytes: int = 0, *, ratios: bool = True
) -> StorageReport:
    """Walk the repository once and report its use; ``ratios`` also reads the journal's file
    events for the deduplication ratio (a status line leaves it out to stay fast)."""
    report = StorageReport(by_kind=_bytes_by_kind(repo.root), quota_bytes=quota_bytes)
    if ratios:
        stats = repo.blobs.stats()
        report.blob_raw_bytes, report.blob_stored_bytes = stats.raw_bytes, stats.stored_bytes
        report.file_versions_bytes = _file_versions_bytes(repo, snapshots)
    return report


def _file_versions_bytes(repo: Repository, snapshots: Snapshots) -> int:
    """Logical bytes of every file version a restore can bring back: those in the journal,
    plus those only the oldest snapshot still holds (their events were pruned)."""
    total = 0
    first = repo.log.first_seq
    for batch in repo.log.read_batches(first):
        total += sum(e.after.size for e in batch if isinstance(e.after, FileImage))
    oldest = snapshots.catalog.ids()[:1]
    for snap_id in oldest:
        for table in snapshots.catalog.load(snap_id).tables.values():
            if table.ref.source != FILESYSTEM:
                continue
            for batch in snapshots.rows(table, columns=["seq", "size"]):
                seqs, sizes = batch["seq"].to_pylist(), batch["size"].to_pylist()
                total += sum(z for q, z in zip(seqs, sizes, strict=True) if q < first)
    return total


def _bytes_by_kind(root: Path) -> dict[str, int]:
    totals = dict.fromkeys([*KINDS, "other"], 0)
    for dirpath, _, files in os.walk(root):
        top = Path(dirpath).relative_to(root).parts
        kind = KINDS.get(top[0], "other") if top else "other"
        for name in files:
            try:
                totals[kind] += (Path(dirpath) / name).stat().st_size
            except FileNotFoundError:
                continue  # removed while we walked
    return totals


def parse_size(text: str) -> int:
    """``"10GB"``, ``"512 MiB"``, ``"0"`` as bytes; ValueError names the accepted forms."""
    cleaned = text.strip().upper().replace(" ", "")
    number = cleaned.rstrip("KMGTIB")
    unit = cleaned[len(number) :]
    try:
        value = float(number)
        factor = _UNITS[unit]
    except (ValueError, KeyError):
        raise ValueError(
            f"{text!r} is not a size; use a number with an optional unit B, KB, MB, GB, TB "
            '(powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), e.g. "10GB"'
        ) from None
    if value < 0:
        raise ValueError(f"{text!r} is negative; sizes are 0 or more")
    return int(value * factor)
