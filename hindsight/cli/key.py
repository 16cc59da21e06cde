"""``hindsight key rotate``: start encrypting with a new data key; old data stays readable."""

from __future__ import annotations

import argparse
from typing import Any

from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit
from hindsight.wiring import open_repository, resolve_secret

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``key`` command group."""
    group = commands.add_parser("key", help="manage the repository's encryption keys")
    sub = group.add_subparsers(dest="key_command", metavar="COMMAND", required=True)
    rotate = sub.add_parser("rotate", parents=[common], help="switch to a new data key")
    add_key_file(rotate)
    rotate.set_defaults(handler=run_rotate)


def run_rotate(args: argparse.Namespace) -> int:
    """Add a data key and make it active; needs the writer lock (stop the daemon first)."""
    config = config_from(args)
    secret = resolve_secret(config.storage.encryption, key_file=args.key_file)
    with open_repository(config, writable=True, key_file=args.key_file) as repo:
        key_id = repo.rotate_key(secret)
    report = {"active_key_id": key_id}
    emit(
        args.json, report, lambda: f"New data key {key_id} is active; older keys stay for reading."
    )
    return 0
