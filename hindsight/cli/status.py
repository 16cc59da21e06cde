"""``hindsight status``: what is protected, where, and how the repository is doing."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from compaction.schedule import JobHistory, Schedule, utc_now
from hindsight.backup_service import BackupService, job_history_path
from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, format_ts
from hindsight.config import Config
from hindsight.wiring import open_repository
from journal.errors import CorruptionError
from journal.repository import Repository

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``status`` command."""
    p = commands.add_parser("status", parents=[common], help="show the repository's status")
    add_key_file(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Gather and print the status."""
    config = config_from(args)
    with open_repository(config, key_file=args.key_file) as repo:
        stats = repo.log.stats()
        report = {
            "config": str(config.path),
            "repository": str(repo.root),
            "repository_id": repo.id,
            "encrypted": repo.encrypted,
            "mode": repo.mode,
            "journal": stats._asdict(),
            "blobs": dataclasses.asdict(repo.blobs.stats()),
            "checkpoints": repo.checkpoints.all(),
            "backups": _backups(config, repo),
            "jobs": _jobs(config, repo),
            "sources": {
                "filesystem": [str(s.path) for s in config.sources.filesystem],
                "mongodb": [s.redacted_uri for s in config.sources.mongodb],
            },
        }
    emit(args.json, report, lambda: _text(report))
    return 0


def _backups(config: Config, repo: Repository) -> dict[str, Any]:
    """The newest backup of each type, with its age, and how many there are."""
    service = BackupService(config, repo)
    newest = {b.type: b.metadata for b in service.newest_per_type()}
    storage = service.storage(ratios=False).to_dict()
    return {"count": len(service.catalog.ids()), "newest": newest, "storage": storage}


def _jobs(config: Config, repo: Repository) -> list[dict[str, Any]]:
    """Each scheduled job: cron, last run (start, end, result, error) and next due time."""
    schedules = [
        Schedule(name, cron)
        for name, cron in dataclasses.asdict(config.backup.schedule).items()
        if cron
    ]
    try:
        history = JobHistory(job_history_path(repo))
    except CorruptionError as exc:  # the daemon moves it aside and starts afresh
        return [{"job": "*", "cron": "", "last": None, "next_due": None, "error": str(exc)}]
    return [s.as_dict() for s in history.summary(schedules, now=utc_now())]


_ENCRYPTION = {
    "aes-256-gcm": "everything (AES-256-GCM)",
    "secrets": "secret files only (.env, keys, credentials); the rest is NOT encrypted",
    "none": "OFF, secret files cannot be stored (an old repository: create a new one)",
}


def _text(r: dict[str, Any]) -> str:
    j, b = r["journal"], r["blobs"]
    fs, mongo = r["sources"]["filesystem"], r["sources"]["mongodb"]
    return "\n".join(
        [
            f"Repository   {r['repository']}  (id {r['repository_id'][:12]})",
            f"Config       {r['config']}",
            f"Encryption   {_ENCRYPTION[r['mode']]}",
            f"Journal      {j['events']} events in {j['segments']} segments "
            f"({j['sealed_segments']} sealed), {format_bytes(j['bytes'])}",
            f"Covers       {format_ts(j['min_ts'])} .. {format_ts(j['max_ts'])}",
            f"File store   {b['blobs']} file versions, {b['chunks']} chunks in {b['packs']} "
            f"packs, {format_bytes(b['stored_bytes'])}",
            f"Sources      {len(fs)} directories, {len(mongo)} MongoDB",
            *(f"  - {s}" for s in [*fs, *mongo]),
            f"Checkpoints  {', '.join(f'{k}={v}' for k, v in r['checkpoints'].items()) or '-'}",
            *_backup_lines(r["backups"]),
            *_job_lines(r["jobs"]),
        ]
    )


def _backup_lines(b: dict[str, Any]) -> list[str]:
    s = b["storage"]
    quota = ""
    if s["quota_bytes"]:
        quota = f", {s['quota_used'] * 100:.1f}% of the {format_bytes(s['quota_bytes'])} quota"
        quota += "  ALERT: over quota" if s["over_quota"] else ""
    lines = [f"Storage      {format_bytes(s['total_bytes'])}{quota}"]
    if not b["count"]:
        return [*lines, "Backups      none yet (`hindsight backup create`)"]
    lines.append(f"Backups      {b['count']}")
    for type_, m in b["newest"].items():
        verified = "verified" if m["verification"]["verified"] else "not verified"
        lines.append(f"  newest {type_:12} {m['backup_id']} at {m['timestamp']} ({verified})")
    return lines


def _job_lines(jobs: list[dict[str, Any]]) -> list[str]:
    lines = ["Schedules    (run by `hindsight run`)" if jobs else "Schedules    none"]
    for j in jobs:
        last = j.get("last") or {}
        result = last.get("result", "never run") if "error" not in j else f"history: {j['error']}"
        error = f": {last['message']}" if last.get("message") and result == "failed" else ""
        overdue = f", OVERDUE since {j['overdue_since']}" if j.get("overdue_since") else ""
        lines.append(
            f"  {j['job']:12} {j['cron']:14} last {result}{error}, "
            f"next {j.get('next_due') or '-'}{overdue}"
        )
    return lines
