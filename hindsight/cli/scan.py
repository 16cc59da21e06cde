"""``hindsight recover scan | duplicates``: find lost, corrupted and duplicated data.

``scan`` exits 0 when it found nothing wrong and 2 when it found something (each finding
with where a good version is and the command that restores it). Both only read: the
journal, the protected files and the databases; they work while the daemon runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, progress_bar
from hindsight.scan_service import SOURCES, ScanService
from hindsight.wiring import open_repository

__all__ = ["EXIT_FINDINGS", "register"]

EXIT_FINDINGS = 2


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``scan`` and ``duplicates`` to the ``recover`` group's subcommands."""
    scan = sub.add_parser(
        "scan", parents=[common], help="find lost or corrupted files and collections"
    )
    scan.add_argument("--source", action="append", default=[], choices=SOURCES,
                      help="scan only this source (repeatable; default: all)")  # fmt: skip
    scan.add_argument("--deep", action="store_true",
                      help="hash every file, not only those whose ctime moved")  # fmt: skip
    duplicates = sub.add_parser(
        "duplicates", parents=[common], help="groups of identical protected files"
    )
    for p, handler in ((scan, run_scan), (duplicates, run_duplicates)):
        add_key_file(p)
        p.set_defaults(handler=handler)


def _service(args: argparse.Namespace) -> ScanService:
    config = config_from(args)
    return ScanService(config, open_repository(config, key_file=args.key_file))


def run_scan(args: argparse.Namespace) -> int:
    """Scan; exit 2 when anything was found."""
    with _service(args) as service, progress_bar("hashing", not args.json) as bar:
        result = service.scan(args.source, deep=args.deep, progress=bar)
    report = result.to_dict()
    emit(args.json, report, lambda: _scan_text(report))
    return 0 if result.clean else EXIT_FINDINGS


def run_duplicates(args: argparse.Namespace) -> int:
    with _service(args) as service:
        report = service.duplicates().to_dict()
    emit(args.json, report, lambda: _duplicates_text(report))
    return 0


def _scan_text(r: dict[str, Any]) -> str:
    lines = [f"Scan {r['scan_id']} at {r['timestamp']}"]
    lines += _sources_text(r["sources"])
    for title, kind in (("Lost files", "lost"), ("Corrupted files", "corrupted")):
        found = [f for f in r["findings"] if f[kind]]
        if found:
            lines.append(f"{title}:")
            lines += [line for f in found for line in _finding_text(f)]
    others = [f for f in r["findings"] if not (f["lost"] or f["corrupted"])]
    if others:
        lines.append("MongoDB:")
        lines += [line for f in others for line in _finding_text(f)]
    if r["recommendations"]:
        lines.append("Recommendations:")
        lines += [f"  {text}" for text in r["recommendations"]]
    lines += [f"  note: {p}" for p in r["problems"]]
    lines.append("Nothing lost or corrupted." if not r["findings"] else "")
    return "\n".join(lines).rstrip()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _sources_text(sources: dict[str, Any]) -> list[str]:
    lines = []
    fs = sources["filesystem"]
    if fs["scanned"]:
        lines.append(
            f"  filesystem: {fs['files_scanned']} files, {fs['files_found']} found, "
            f"{fs['files_missing']} missing, {fs['files_corrupted']} corrupted "
            f"({fs['files_changed_since_capture']} changed and "
            f"{fs['files_not_captured_yet']} new since the last capture)"
        )
    db = sources["mongodb"]
    if db["scanned"]:
        state = "connected" if db["connected"] else "NOT reachable"
        lines.append(
            f"  mongodb: {state}, {db['collections_found']} collections, "
            f"{db['collections_missing']} missing, {db['total_documents']} documents"
        )
    if "git" in sources:
        git = sources["git"]
        lines.append(
            f"  git: {_count(git['work_trees'], 'work tree')}, "
            f"{_count(git['files_only_in_git'], 'lost file')} only git has"
        )
    if "cloud" in sources:
        lines.append(f"  cloud: {sources['cloud']['message']}")
    return lines


def _finding_text(f: dict[str, Any]) -> list[str]:
    where = f"{f['where']}/{f['path']}" if f["where"] else f["path"]
    lines = [f"  {where}  ({f['type']}): {f['reason']}"]
    if f["last_seen"]:
        lines.append(f"    last seen {f['last_seen']}")
    points = ", ".join(f["recoverable_from"]) or "nowhere: no backup, journal or git copy"
    lines.append(f"    recoverable from: {points}")
    return lines


def _duplicates_text(r: dict[str, Any]) -> str:
    lines = [
        f"{r['files']} protected files ({r['files_hashed']} read), {r['duplicate_groups']} "
        f"groups of identical content, {format_bytes(r['wasted_bytes'])} in extra copies"
    ]
    for group in r["groups"]:
        lines.append(f"  {format_bytes(group['size'])} x {len(group['paths'])}:")
        lines += [f"    {path}" for path in group["paths"]]
    lines += [f"  note: {p}" for p in r["problems"]]
    return "\n".join(lines)
