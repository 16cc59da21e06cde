"""``hindsight audit verify``: check the tamper-evident audit trail (``hindsight.audit``).

With the repository's key every entry's hash is checked; without it, keyed entries are
checked for sequence, links and times only, and a note says so.
"""

from __future__ import annotations

import argparse
from typing import Any

from hindsight.audit import HMAC_SHA256, AuditLog, AuditProblem, audit_log
from hindsight.cli.common import add_key_file, repository_from
from hindsight.cli.output import emit
from journal.errors import CorruptionError

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``audit`` command group."""
    group = commands.add_parser("audit", help="the tamper-evident audit trail")
    sub = group.add_subparsers(dest="audit_command", metavar="COMMAND", required=True)
    verify = sub.add_parser(
        "verify", parents=[common], help="find changed, removed or reordered audit entries"
    )
    add_key_file(verify)
    verify.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Check the whole chain and head.json; list each problem; exit 1 if any."""
    with repository_from(args) as repo:
        log = audit_log(repo)
        problems = log.verify()
        entries, keyed = _counts(log)
        keyless = repo.ring is None
    notes = []
    if keyless and keyed:
        notes.append(
            f"{keyed} keyed entries were checked for order only; give the repository key "
            "(--key-file) to check their contents"
        )
    data = {
        "ok": not problems,
        "entries": entries,
        "problems": [_problem_dict(p) for p in problems],
        "notes": notes,
    }
    emit(args.json, data, lambda: _text(data, problems))
    return 0 if not problems else 1


def _counts(log: AuditLog) -> tuple[int | None, int]:
    """Entries and keyed entries; None entries when a line is unreadable (verify says where)."""
    entries = keyed = 0
    try:
        for entry in log.entries():
            entries += 1
            keyed += entry.alg == HMAC_SHA256
    except CorruptionError:
        return None, keyed
    return entries, keyed


def _problem_dict(problem: AuditProblem) -> dict[str, Any]:
    return {"line": problem.line, "seq": problem.seq, "reason": problem.reason}


def _text(data: dict[str, Any], problems: list[AuditProblem]) -> str:
    lines = [f"PROBLEM  {_where(p)}: {p.reason}" for p in problems]
    lines += [f"note     {n}" for n in data["notes"]]
    count = data["entries"]
    if problems:
        plural = "" if len(problems) == 1 else "s"
        lines.append(f"audit trail damaged: {len(problems)} problem{plural}")
    else:
        lines.append(f"audit trail intact: {count} entr{'y' if count == 1 else 'ies'}")
    return "\n".join(lines)


def _where(problem: AuditProblem) -> str:
    return f"line {problem.line}" if problem.line else "head.json"
