"""``hindsight status``: what is protected, where, and how the repository is doing."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from hindsight.cli.common import add_key_file, config_from
from hindsight.cli.output import emit, format_bytes, format_ts
from hindsight.wiring import open_repository

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``status`` command."""
    p = commands.add_parser("status", parents=[common], help="show the repository's status")
    add_key_file(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Gather and print the status."""
    config = config_from(args)
    with open_repository(config, key_file=args.key_file) as repo:
        stats = repo.log.stats()
        report = {
            "config": str(config.path),
            "repository": str(repo.root),
            "repository_id": repo.id,
            "encrypted": repo.encrypted,
            "mode": repo.mode,
            "journal": stats._asdict(),
            "blobs": dataclasses.asdict(repo.blobs.stats()),
            "checkpoints": repo.checkpoints.all(),
            "sources": {
                "filesystem": [str(s.path) for s in config.sources.filesystem],
                "mongodb": [s.redacted_uri for s in config.sources.mongodb],
            },
        }
    emit(args.json, report, lambda: _text(report))
    return 0


_ENCRYPTION = {
    "aes-256-gcm": "everything (AES-256-GCM)",
    "secrets": "secret files only (.env, keys, credentials); the rest is NOT encrypted",
    "none": "OFF, secret files cannot be stored (an old repository: create a new one)",
}


def _text(r: dict[str, Any]) -> str:
    j, b = r["journal"], r["blobs"]
    fs, mongo = r["sources"]["filesystem"], r["sources"]["mongodb"]
    return "\n".join(
        [
            f"Repository   {r['repository']}  (id {r['repository_id'][:12]})",
            f"Config       {r['config']}",
            f"Encryption   {_ENCRYPTION[r['mode']]}",
            f"Journal      {j['events']} events in {j['segments']} segments "
            f"({j['sealed_segments']} sealed), {format_bytes(j['bytes'])}",
            f"Covers       {format_ts(j['min_ts'])} .. {format_ts(j['max_ts'])}",
            f"File store   {b['blobs']} file versions, {b['chunks']} chunks in {b['packs']} "
            f"packs, {format_bytes(b['stored_bytes'])}",
            f"Sources      {len(fs)} directories, {len(mongo)} MongoDB",
            *(f"  - {s}" for s in [*fs, *mongo]),
            f"Checkpoints  {', '.join(f'{k}={v}' for k, v in r['checkpoints'].items()) or '-'}",
        ]
    )
