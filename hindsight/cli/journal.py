"""``hindsight journal stats | tail | verify``: look into and check the change journal."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable
from typing import Any

from hindsight.cli.common import add_key_file, repository_from
from hindsight.cli.output import emit, emit_json_line, format_bytes, format_ts, progress_bar
from hindsight.timeparse import parse_time
from journal.errors import ConfigError
from journal.events import ChangeEvent, FileImage
from journal.log import SegmentLog
from journal.verify import verify_journal

__all__ = ["event_json", "register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``journal`` command group."""
    group = commands.add_parser("journal", help="inspect and verify the change journal")
    sub = group.add_subparsers(dest="journal_command", metavar="COMMAND", required=True)
    stats = sub.add_parser("stats", parents=[common], help="event counts, spans and sizes")
    tail = sub.add_parser("tail", parents=[common], help="print recent events")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    tail.add_argument(
        "--since", metavar="TIME", help="events since TIME (ISO 8601, or 15m, 2h, 7d ago)"
    )
    tail.add_argument("--from-seq", type=int, metavar="N", help="events from sequence number N")
    tail.add_argument(
        "-n", "--lines", type=int, default=20, metavar="N", help="last N events (default 20)"
    )
    verify = sub.add_parser(
        "verify", parents=[common], help="read and check every frame; exit 1 on damage"
    )
    for p, handler in ((stats, run_stats), (tail, run_tail), (verify, run_verify)):
        add_key_file(p)
        p.set_defaults(handler=handler)


def run_stats(args: argparse.Namespace) -> int:
    """Print journal statistics."""
    with repository_from(args) as repo:
        s = repo.log.stats()
        report = {
            **s._asdict(),
            "segments_detail": [_segment_json(r, i) for r, i in repo.log.segment_files()],
        }
    emit(args.json, report, lambda: _stats_text(report))
    return 0


def _segment_json(rel: str, info: Any) -> dict[str, Any]:
    return {"path": rel, "sealed": info is not None, **(info._asdict() if info else {})}


def _stats_text(r: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"events     {r['events']}  (seq {r['first_seq']} .. {r['last_seq']})",
            f"segments   {r['segments']} ({r['sealed_segments']} sealed), "
            f"{format_bytes(r['bytes'])}",
            f"time span  {format_ts(r['min_ts'])} .. {format_ts(r['max_ts'])}",
        ]
    )


def run_tail(args: argparse.Namespace) -> int:
    """Print recent events, then follow new ones if asked."""
    with repository_from(args) as repo:
        log = repo.log
        if args.lines < 0 or (args.from_seq is not None and args.from_seq < 1):
            raise ConfigError("-n and --from-seq take positive numbers")
        nxt = log.next_seq
        if args.since:
            history: Iterable[ChangeEvent] = log.read_time(parse_time(args.since))
        else:
            start = args.from_seq if args.from_seq is not None else max(1, nxt - args.lines)
            history = log.read(start)
        for event in history:
            _print_event(event, args.json)
        if args.follow:
            asyncio.run(_follow(log, log.next_seq, args.json))
    return 0


async def _follow(log: SegmentLog, start: int, as_json: bool) -> None:
    async for event in log.follow(start):
        _print_event(event, as_json)


def event_json(e: ChangeEvent) -> dict[str, Any]:
    """An event as JSON-friendly data; document bodies are summarised, never printed."""
    return {
        "seq": e.seq,
        "source_ts": format_ts(e.source_ts),
        "capture_ts": format_ts(e.capture_ts),
        "source": e.source.value,
        "namespace": e.namespace,
        "key": e.key,
        "op": e.op.value,
        "after": _after_json(e.after),
        "position": e.position.hex(),
        "txn": e.txn,
        "meta": dict(e.meta or {}),
    }


def _after_json(after: object) -> object:
    if isinstance(after, FileImage):
        return {"file": after._asdict()}
    if isinstance(after, bytes):
        return {"document_bytes": len(after)}
    return None


def _print_event(e: ChangeEvent, as_json: bool) -> None:
    if as_json:
        emit_json_line(event_json(e))
        return
    if isinstance(e.after, FileImage):
        detail = f"file {format_bytes(e.after.size)} sha256:{e.after.sha256[:12]}"
    elif isinstance(e.after, bytes):
        detail = f"document {format_bytes(len(e.after))}"
    else:
        detail = ""
    print(
        f"{e.seq:>10}  {format_ts(e.source_ts)}  {e.source.value:<10} {e.op.value:<10} "
        f"{e.namespace}  {e.key}  {detail}".rstrip(),
        flush=True,
    )


def run_verify(args: argparse.Namespace) -> int:
    """Check every frame, tag and hash; list each damaged place; exit 1 if any."""
    with repository_from(args) as repo, progress_bar("verifying", not args.json) as progress:
        report = verify_journal(repo.log, progress)
        blob_problems = repo.blobs.verify()
        blob_stats = repo.blobs.stats()
        notes = report.notes + repo.blobs.recovery_notes
    problems = report.problems + blob_problems
    data = {
        "ok": not problems,
        "segments": report.segments,
        "frames": report.frames,
        "events": report.events,
        "bytes": report.bytes,
        "packs": blob_stats.packs,
        "chunks": blob_stats.chunks,
        "problems": [p._asdict() for p in problems],
        "notes": notes,
    }
    emit(args.json, data, lambda: _verify_text(data, problems))
    return 0 if not problems else 1


def _verify_text(data: dict[str, Any], problems: list[Any]) -> str:
    lines = [f"CORRUPT  {p}" for p in problems] + [f"note     {n}" for n in data["notes"]]
    verdict = "OK" if data["ok"] else f"FAILED: {len(problems)} problem(s)"
    lines.append(
        f"{verdict}: checked {data['segments']} segments, {data['frames']} frames, "
        f"{data['events']} events, {format_bytes(data['bytes'])}; "
        f"{data['packs']} packs, {data['chunks']} chunks"
    )
    return "\n".join(lines)
