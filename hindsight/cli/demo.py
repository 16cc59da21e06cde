"""``hindsight demo``: a realistic chatbot workspace to try Hindsight on (``make run``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hindsight.cli import init
from hindsight.demo import make_tree
from journal.errors import ConfigError

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``demo`` command."""
    p = commands.add_parser(
        "demo", parents=[common], help="create a demo chatbot workspace and protect it"
    )
    p.add_argument("--dir", default="./demo-app", help="where to create it (default ./demo-app)")
    p.add_argument("--files", type=int, default=150, help="how many files (default 150)")
    p.add_argument("--repo", default="./backups", help="repository directory (default ./backups)")
    p.add_argument("--mongodb", action="append", default=[], metavar="URI",
                   help="a MongoDB to protect too (repeatable)")  # fmt: skip
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Generate the tree, then `hindsight init --protect` it, the API on (``[api]``)."""
    target = Path(args.dir)
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target} is not empty; choose another --dir")
    if not 1 <= args.files <= 100_000:
        raise ConfigError("--files takes a number from 1 to 100000")
    stats = make_tree(target, files=args.files, total_bytes=args.files * 16 * 1024)
    print(f"Created a demo chatbot workspace in {target}: {stats.files} files")
    init_args = argparse.Namespace(
        config=getattr(args, "config", None),
        json=getattr(args, "json", False),
        debug=getattr(args, "debug", False),
        repo=args.repo,
        protect=[str(target)],
        mongodb=args.mongodb,
        encrypt=False,
        api=True,
    )
    return init.run(init_args)
