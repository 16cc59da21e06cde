"""``hindsight token ...``: API bearer tokens (create, list, revoke).

Tokens live in the repository (``api/tokens.json``) as hashes; managing them needs no
repository key. ``create`` prints the plaintext once.
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from compaction.retention import parse_duration
from hindsight.cli.common import config_from
from hindsight.cli.output import emit
from hindsight.tokens import Role, Token, TokenStore
from journal.errors import ConfigError, RepositoryError
from journal.repository import CONFIG_KEY

__all__ = ["register"]

_COLUMNS = ("id", "name", "role", "created", "expires", "status")


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``token`` command group."""
    group = commands.add_parser("token", help="API bearer tokens: create, list, revoke")
    sub = group.add_subparsers(dest="token_command", metavar="COMMAND", required=True)

    create = sub.add_parser("create", parents=[common], help="make a token (shown only once)")
    create.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role],
        help="viewer reads; operator also backs up and dry-runs restores; admin may do anything",
    )
    create.add_argument("--name", help="a label unique among active tokens (default token-ID)")
    create.add_argument(
        "--expires",
        metavar="DURATION",
        help='lifetime, e.g. "90m", "12h", "30d", "2w" (default: never expires)',
    )
    create.set_defaults(handler=run_create)

    listing = sub.add_parser("list", parents=[common], help="every token (never its secret)")
    listing.set_defaults(handler=run_list)

    revoke = sub.add_parser("revoke", parents=[common], help="make a token stop working")
    revoke.add_argument("token", metavar="ID_OR_NAME", help="the token's id or name")
    revoke.set_defaults(handler=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    """Create a token and print it once."""
    expires_in = _lifetime(args.expires)
    token, plaintext = _store(args).create(Role(args.role), args.name, expires_in)
    emit(args.json, {"token": plaintext, **token.as_dict()}, lambda: _created(token, plaintext))
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Print every token's record."""
    tokens = _store(args).list()
    if args.json or not tokens:
        none = "No API tokens yet; create one with `hindsight token create --role viewer`."
        emit(args.json, [t.as_dict() for t in tokens], lambda: none)
    else:
        _print_table(tokens)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke one token by id or name."""
    token = _store(args).revoke(args.token)
    emit(
        args.json,
        token.as_dict(),
        lambda: f"Token {token.id} ({token.name}) is revoked; requests with it are refused.",
    )
    return 0


def _store(args: argparse.Namespace) -> TokenStore:
    """The token store of the configured repository, which must exist."""
    root = config_from(args).storage.repository
    if not (root / CONFIG_KEY).exists():
        raise RepositoryError(
            f"no Hindsight repository at {root}; create one with `hindsight init --repo {root}`"
        )
    return TokenStore(root)


def _lifetime(text: str | None) -> timedelta | None:
    """``--expires`` as a duration; None when not given."""
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ConfigError as exc:
        raise ConfigError(f"--expires: {exc}") from None
    if seconds == 0:
        raise ConfigError("--expires must be longer than 0; leave it out for no expiry")
    return timedelta(seconds=seconds)


def _created(token: Token, plaintext: str) -> str:
    expiry = f"expires {token.expires_at}" if token.expires_at else "never expires"
    return (
        f"Created {token.role} token {token.id} ({token.name}); it {expiry}.\n\n"
        f"    {plaintext}\n\n"
        "Copy it now: it cannot be shown again. Send it as `Authorization: Bearer <token>`."
    )


def _print_table(tokens: list[Token]) -> None:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, highlight=False)
    for column in _COLUMNS:
        table.add_column(column, overflow="fold")
    for token in tokens:
        cells = (token.id, token.name, token.role.value, token.created_at)
        status = token.status()
        # Text, not str: a name is the user's text, never rich markup.
        table.add_row(
            *map(Text, (*cells, token.expires_at or "never", status)),
            style=None if status == "active" else "dim",
        )
    Console(highlight=False, width=None if sys.stdout.isatty() else 4096).print(table)
