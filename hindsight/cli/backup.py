"""``hindsight backup ...``: create, list, show, verify, delete, prune and storage.

Commands that must write the journal (create, delete, prune) open the repository as its
writer; when the daemon holds it, they ask the daemon to do the work (``hindsight.control``)
and print its answer, so every command works with or without the daemon running.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from compaction.backup_maker import SCOPES, Scope
from compaction.backups import FULL, INCREMENTAL, Backup
from hindsight.backup_service import (
    BackupService,
    create_result_dict,
    prune_dict,
    verify_dict,
)
from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, progress_bar
from hindsight.config import Config
from hindsight.wiring import open_repository
from hindsight.writer import as_writer

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``backup`` command group."""
    group = commands.add_parser("backup", help="create, list, verify and remove backups")
    sub = group.add_subparsers(dest="backup_command", metavar="COMMAND", required=True)

    create = sub.add_parser("create", parents=[common], help="take a backup now")
    kind = create.add_mutually_exclusive_group()
    kind.add_argument(
        "--full",
        dest="type",
        action="store_const",
        const=FULL,
        help="a snapshot of everything (default)",
    )
    kind.add_argument(
        "--incremental",
        dest="type",
        action="store_const",
        const=INCREMENTAL,
        help="a restore point covering the changes since the previous backup",
    )
    create.add_argument(
        "--scope",
        type=_scopes,
        default=SCOPES,
        metavar="SCOPE[,SCOPE]",
        help="mongodb, filesystem, config (default: all)",
    )
    create.set_defaults(handler=run_create, type=FULL)

    listing = sub.add_parser("list", parents=[common], help="list backups, oldest first")
    listing.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FILTER",
        help="last_7_days, type=full|incremental, since=TIME; repeatable",
    )
    listing.set_defaults(handler=run_list)

    show = sub.add_parser("show", parents=[common], help="one backup's metadata")
    show.add_argument("backup_id", metavar="ID")
    show.set_defaults(handler=run_show)

    verify = sub.add_parser("verify", parents=[common], help="check a backup's integrity")
    verify.add_argument("backup_id", metavar="ID")
    verify.add_argument(
        "--read-data",
        action="store_true",
        help="also decrypt and decode every record and file content it needs",
    )
    verify.set_defaults(handler=run_verify)

    delete = sub.add_parser("delete", parents=[common], help="delete a backup and free its data")
    delete.add_argument("backup_id", metavar="ID")
    delete.add_argument(
        "--force", action="store_true", help="delete even when incremental backups restore from it"
    )
    delete.add_argument("--dry-run", action="store_true", help="only say what would be freed")
    delete.set_defaults(handler=run_delete)

    prune = sub.add_parser("prune", parents=[common], help="apply the retention policy")
    prune.add_argument("--dry-run", action="store_true", help="only say what would be freed")
    prune.set_defaults(handler=run_prune)

    storage = sub.add_parser("storage", parents=[common], help="storage use and quota")
    storage.set_defaults(handler=run_storage)
    for p in (create, listing, show, verify, delete, prune, storage):
        add_key_file(p)


def _scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise argparse.ArgumentTypeError(
            f"unknown scope {', '.join(unknown) or repr(text)}; use {', '.join(SCOPES)}, "
            "comma-separated"
        )
    return scopes


# ---------------------------------------------------------------------- writing commands
def _as_writer(
    args: argparse.Namespace,
    action: str,
    request: dict[str, Any],
    local: Callable[[BackupService], dict[str, Any]],
) -> dict[str, Any]:
    """Run ``local`` as the journal's writer, or have the running daemon run ``action``."""
    return as_writer(config_from(args), args.key_file, action, request, local)


def run_create(args: argparse.Namespace) -> int:
    """Capture what changed, take the backup, verify it."""
    scope = Scope(args.scope)

    def local(service: BackupService) -> dict[str, Any]:
        with progress_bar("snapshot", not args.json) as bar:
            done = [0]

            def progress(n: int) -> None:
                done[0] += n
                bar(done[0], 0)

            result = service.create(args.type, scope, progress=progress)
        return create_result_dict(result)

    request = {"type": args.type, "scope": list(scope.parts)}
    report = _as_writer(args, "backup", request, local)
    emit(args.json, report, lambda: _create_text(report))
    verification = report.get("verification")
    return 1 if verification and not verification["ok"] else 0


def run_delete(args: argparse.Namespace) -> int:
    """Delete one backup and what only it needed."""
    request = {"backup_id": args.backup_id, "force": args.force, "dry_run": args.dry_run}
    report = _as_writer(
        args,
        "delete",
        request,
        lambda s: prune_dict(s.delete(args.backup_id, force=args.force, dry_run=args.dry_run)),
    )
    emit(args.json, report, lambda: _prune_text(report))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Apply the retention policy."""
    report = _as_writer(
        args,
        "prune",
        {"dry_run": args.dry_run},
        lambda s: prune_dict(s.prune(dry_run=args.dry_run)),
    )
    emit(args.json, report, lambda: _prune_text(report))
    return 0


# ---------------------------------------------------------------------- reading commands
def _reader(args: argparse.Namespace) -> tuple[Config, Any]:
    config = config_from(args)
    return config, open_repository(config, key_file=args.key_file)


def run_list(args: argparse.Namespace) -> int:
    config, repo = _reader(args)
    with repo:
        service = BackupService(config, repo)
        backups = service.find(args.filter)
    rows = [b.metadata for b in backups]
    emit(args.json, rows, lambda: _list_text(backups))
    for exc in service.damaged:  # listed anyway: one bad record must not hide the rest
        print(f"hindsight: damaged backup record: {exc}", file=sys.stderr)
    return 1 if service.damaged else 0


def run_show(args: argparse.Namespace) -> int:
    config, repo = _reader(args)
    with repo:
        backup = BackupService(config, repo).get(args.backup_id)
    emit(args.json, backup.metadata, lambda: _show_text(backup))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Exit 1 with a located report when anything is wrong."""
    config, repo = _reader(args)
    with repo, progress_bar("verify", not args.json) as bar:
        done = [0]

        def progress(n: int) -> None:
            done[0] += n
            bar(done[0], 0)

        service = BackupService(config, repo)
        report = verify_dict(
            service.verify(args.backup_id, read_data=args.read_data, progress=progress)
        )
    emit(args.json, report, lambda: _verify_text(report))
    return 0 if report["ok"] else 1


def run_storage(args: argparse.Namespace) -> int:
    config, repo = _reader(args)
    with repo:
        report = BackupService(config, repo).storage().to_dict()
    emit(args.json, report, lambda: _storage_text(report))
    return 0


# ---------------------------------------------------------------------- text
def _captured_text(c: dict[str, Any]) -> list[str]:
    """What the capture before the backup found (nothing when the daemon took it)."""
    lines = []
    if c.get("roots"):
        lines += [
            f"Scanned {c['files']} files in {', '.join(c['roots'])}: new {c['new']}, "
            f"changed {c['changed']}, moved {c['moved']}, deleted {c['deleted']}, "
            f"unchanged {c['unchanged']}",
        ]
    lines += [
        f"  could not capture {p['root']}/{p['relpath']}: {p['reason']}"
        for p in c.get("problems", [])
    ]
    for name, m in c.get("mongodb", {}).items():
        how = "initial sync" if m["initial_sync"] else "caught up"
        lines.append(
            f"MongoDB {name}: {how}, {m['collections']} collections, "
            f"{m['documents_copied']} documents copied, {m['events']} events"
            + (f", {m['dropped']} collections gone since the last capture" if m["dropped"] else "")
        )
    return lines


def _create_text(r: dict[str, Any]) -> str:
    b = r["backup"]
    lines = [
        *_captured_text(r["captured"]),
        f"Created {b['type']} backup {b['backup_id']} ({', '.join(b['scope'])})"
        + ("  [taken by the running daemon]" if r.get("via_daemon") else ""),
        f"  {_counts(b)}",
        f"  size {format_bytes(b['size'])}, stored {format_bytes(b['compressed_size'])}, "
        f"encrypted {'yes' if b['encrypted'] else 'no'}",
    ]
    v = r.get("verification")
    if v is not None:
        lines.append(
            "  verified: OK"
            if v["ok"]
            else f"  verification FAILED: {len(v['problems'])} problem(s)"
        )
        lines += [f"    {p['path']}: {p['reason']}" for p in v["problems"][:10]]
    lines += [f"  note: {n}" for n in r["notes"]]
    return "\n".join(lines)


def _counts(b: dict[str, Any]) -> str:
    docs = sum(b["collections"].values())
    return (
        f"{docs} documents in {len(b['collections'])} collections, "
        f"{b['files']['count']} files ({format_bytes(b['files']['total_size'])})"
    )


def _list_text(backups: list[Backup]) -> str:
    if not backups:
        return "No backups yet: run `hindsight backup create`."
    lines = [f"{'ID':24} {'TYPE':12} {'TIME (UTC)':21} {'SIZE':>10} {'STORED':>10}  VERIFIED"]
    for b in backups:
        m = b.metadata
        v = m["verification"]
        state = "yes" if v["verified"] else ("FAILED" if v["verified_at"] else "not yet")
        lines.append(
            f"{m['backup_id']:24} {m['type']:12} {m['timestamp']:21} "
            f"{format_bytes(m['size']):>10} {format_bytes(m['compressed_size']):>10}  {state}"
        )
    return "\n".join(lines)


def _show_text(backup: Backup) -> str:
    m = backup.metadata
    v = m["verification"]
    lines = [
        f"Backup       {m['backup_id']}",
        f"Type         {m['type']}  (scope: {', '.join(m['scope'])})",
        f"Taken        {m['timestamp']}",
        f"Contents     {_counts(m)}",
        *(f"  {name}: {count}" for name, count in m["collections"].items()),
        f"Size         {format_bytes(m['size'])} ({format_bytes(m['compressed_size'])} stored)",
        f"Encrypted    {'yes' if m['encrypted'] else 'no'}",
        f"Checksum     {v['checksum']}",
        f"Verified     {v['verified']} at {v['verified_at'] or '-'}",
        f"Stored at    {m['storage']['location']}: {m['storage']['path']}",
        f"Restores to  journal seq {backup.cut_seq}"
        + (f" (replaying from {backup.point['base']})" if backup.point.get("base") else ""),
    ]
    return "\n".join(lines)


def _verify_text(r: dict[str, Any]) -> str:
    what = "every record and file content" if r["read_data"] else "manifests and checksums"
    head = f"{r['backup_id']}: checked {what}: {r['files_checked']} files"
    if r["read_data"]:
        head += f", {r['rows_read']} records, {r['blobs_read']} file contents"
    if r["ok"]:
        return head + "\nOK: no problems found"
    lines = [head, f"FAILED: {len(r['problems'])} problem(s):"]
    for p in r["problems"]:
        where = p["path"] + (f" @ offset {p['offset']}" if p["offset"] is not None else "")
        lines.append(f"  {where}: {p['reason']}")
    return "\n".join(lines)


def _prune_text(r: dict[str, Any]) -> str:
    verb = "Would free" if r["dry_run"] else "Freed"
    lines = []
    if r["backups_removed"]:
        action = "Would delete" if r["dry_run"] else "Deleted"
        lines.append(f"{action} backups: {', '.join(r['backups_removed'])}")
    else:
        lines.append("No backup is due for removal.")
    lines.append(f"Keeping {len(r['backups_kept'])} backups")
    lines.append(
        f"{verb} {format_bytes(r['total_freed'])}: "
        + ", ".join(f"{k} {format_bytes(v)}" for k, v in r["bytes_freed"].items())
    )
    lines.append(
        f"  {len(r['snapshots_removed'])} snapshots, {len(r['segments_removed'])} journal "
        f"segments ({r['events_removed']} events), {r['parts_removed']} Parquet parts, "
        f"{r['blob_objects_removed']} file-content objects"
    )
    lines.append(f"  the journal is kept from seq {r['journal_from_seq']}")
    return "\n".join(lines)


def _storage_text(r: dict[str, Any]) -> str:
    lines = [f"Total        {format_bytes(r['total_bytes'])}"]
    lines += [f"  {kind:11} {format_bytes(n)}" for kind, n in r["by_kind"].items()]
    ratio = r["compression_ratio"]
    lines.append(f"Compression  {ratio}x (file contents)" if ratio else "Compression  -")
    dedup = r["dedup_ratio"]
    lines.append(
        f"Dedup        {dedup}x (file versions per stored byte)" if dedup else "Dedup        -"
    )
    if r["quota_bytes"]:
        used = r["quota_used"] * 100
        warn = "  OVER QUOTA: prune or raise storage.local.max_size" if r["over_quota"] else ""
        lines.append(f"Quota        {used:.1f}% of {format_bytes(r['quota_bytes'])}{warn}")
    else:
        lines.append("Quota        none (storage.local.max_size)")
    return "\n".join(lines)
