"""Which commands the audit trail records, and recording one (who, what, when, outcome).

Commands that change the repository, its keys, tokens or protected data are recorded, and
so are restores and verifications; reads (status, lists, reports, previews, SQL) are not,
so a dashboard polling them does not bury the actions that matter. An entry is written
after the command, keyed like every other entry when the repository's key is at hand.
"""

from __future__ import annotations

import argparse
import getpass
import logging
from typing import Any

from hindsight.audit import audit_log
from hindsight.cli.common import config_from
from hindsight.wiring import open_repository
from journal.errors import HindsightError

__all__ = ["AUDITED", "operation_of", "record"]

log = logging.getLogger("hindsight.audit")

AUDITED = frozenset(
    {
        "backup create", "backup delete", "backup prune", "backup verify",
        "recover restore", "recover rollback",
        "token create", "token revoke",
        "key rotate",
        "run", "serve",
    }
)  # fmt: skip
TARGETS = ("backup_id", "operation_id", "id_or_name", "role")


def operation_of(args: argparse.Namespace) -> str:
    """``backup create``, ``run``: the command as typed, without its options."""
    command = str(args.command)
    sub = getattr(args, f"{command}_command", None)
    return f"{command} {sub}" if sub else command


def record(args: argparse.Namespace, outcome: str, error: str | None) -> None:
    """Append the command's entry if it is audited; a trail that cannot be written (no
    repository yet, an unreadable key) is logged, never turned into the command's failure."""
    operation = operation_of(args)
    if operation not in AUDITED or (operation == "recover restore" and args.dry_run):
        return
    details: dict[str, Any] = {"exit": "ok" if error is None else error}
    target = next((str(getattr(args, t)) for t in TARGETS if getattr(args, t, None)), "")
    try:
        config = config_from(args)
        with open_repository(config, key_file=getattr(args, "key_file", None)) as repo:
            audit_log(repo).append(
                actor=f"cli:{getpass.getuser()}", action=operation, target=target,
                outcome=outcome, details=details,
            )  # fmt: skip
    except (HindsightError, OSError) as exc:
        log.warning("the audit trail could not record %s: %s", operation, exc)
