"""``hindsight status``: what is protected, where, and how the repository is doing."""

from __future__ import annotations

import argparse
from typing import Any

from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, format_ts
from hindsight.status_report import status_report
from hindsight.wiring import open_repository

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
        report = status_report(config, repo)
    emit(args.json, report, lambda: _text(report))
    return 0


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
