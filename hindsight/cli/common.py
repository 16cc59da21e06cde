"""Helpers the command modules share: config and repository from the parsed arguments."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from hindsight.config import Config, find_config_path, load_config
from hindsight.wiring import open_repository
from journal.repository import Repository

__all__ = ["add_key_file", "config_from", "repository_from"]


def add_key_file(parser: argparse.ArgumentParser) -> None:
    """``--key-file`` for commands that read an encrypted repository."""
    parser.add_argument("--key-file", type=Path, help="repository key (overrides the config)")


def config_from(args: argparse.Namespace) -> Config:
    """The config named by ``--config``, ``$HINDSIGHT_CONFIG`` or ./hindsight.toml."""
    return load_config(find_config_path(args.config, os.environ))


def repository_from(args: argparse.Namespace, *, writable: bool = False) -> Repository:
    """The configured repository, opened read-only unless ``writable``."""
    return open_repository(config_from(args), writable=writable, key_file=args.key_file)
