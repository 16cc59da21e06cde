"""Entry point: parse, dispatch, and turn every Hindsight error into one clear line.

Exit codes: 0 success; 1 a check found problems (e.g. ``journal verify``); 2 bad config or
usage; 3 repository problem; 4 corrupt data; 5 wrong or missing key; 6 source unreachable;
70 internal error (a bug); 130 interrupted. A traceback is printed only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from hindsight.cli import (
    audit,
    audited,
    backup,
    demo,
    init,
    journal,
    key,
    recover,
    report,
    run,
    serve,
    sql,
    status,
    token,
)
from journal.errors import (
    AuthError,
    ConfigError,
    CorruptionError,
    HindsightError,
    RepositoryError,
    SourceUnavailable,
)

__all__ = ["main"]

EXIT_CODES: tuple[tuple[type[HindsightError], int], ...] = (
    (ConfigError, 2),
    (RepositoryError, 3),
    (CorruptionError, 4),
    (AuthError, 5),
    (SourceUnavailable, 6),
)
EXIT_INTERNAL = 70


def _common(defaults: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after its name.

    The copy given to subcommands has no defaults: a default there would overwrite what
    was given before the subcommand (``hindsight --config X status``).
    """
    common = argparse.ArgumentParser(add_help=False)
    off: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    common.add_argument(
        "--config",
        metavar="FILE",
        help="config file (default: $HINDSIGHT_CONFIG, then ./hindsight.toml)",
        **off,
    )
    common.add_argument("--json", action="store_true", help="print machine-readable JSON", **off)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors", **off)
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full command tree; each command group registers its own subcommands."""
    parser = argparse.ArgumentParser(
        prog="hindsight",
        description="Continuous data protection for the chatbot's MongoDB data and files.",
        parents=[_common(defaults=True)],
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands_in_order = (init, status, journal, key, backup, recover, sql, report, audit, token)
    for module in (*commands_in_order, run, serve, demo):
        module.register(commands, _common(defaults=False))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    outcome, error = "failed", None
    try:
        code = int(args.handler(args))
        outcome = "ok" if code == 0 else "failed"
        error = None if code == 0 else f"exit {code}"
        return code
    except HindsightError as exc:
        error = str(exc)
        return _fail(exc, args.debug, _exit_code(exc))
    except KeyboardInterrupt:
        error = "interrupted"
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        outcome = "ok"
        return 0
    except Exception as exc:  # a bug, not a user error: say so, traceback only with --debug
        error = f"internal error: {type(exc).__name__}"
        return _fail(exc, args.debug, EXIT_INTERNAL, f"internal error: {type(exc).__name__}: ")
    finally:
        audited.record(args, outcome, error)


def _exit_code(exc: HindsightError) -> int:
    return next((code for cls, code in EXIT_CODES if isinstance(exc, cls)), 1)


def _fail(exc: BaseException, debug: bool, code: int, prefix: str = "") -> int:
    if debug:
        traceback.print_exc()
    hint = "; run `hindsight journal verify` for a full report" if code == 4 else ""
    if code == EXIT_INTERNAL:
        hint = " (this is a bug in Hindsight; rerun with --debug for the traceback)"
    print(f"hindsight: error: {prefix}{exc}{hint}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
