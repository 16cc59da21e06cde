"""``hindsight init``: write a commented hindsight.toml and create the repository.

Every new repository gets a key (a key file, or the passphrase in $HINDSIGHT_PASSPHRASE):
with ``--encrypt`` it encrypts everything; without it, only the contents of secret files.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path
from typing import Any

from hindsight.cli.output import emit
from hindsight.config import CONFIG_FILENAME, DEFAULT_SECRETS, load_config, render_default_config
from journal.errors import ConfigError
from journal.fsutil import atomic_write
from journal.keys import MasterSecret, create_key_file
from journal.repository import Repository

__all__ = ["register"]


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``init`` command."""
    p = commands.add_parser("init", parents=[common], help="create hindsight.toml and a repository")
    p.add_argument("--repo", default="./backups", help="repository directory (default ./backups)")
    p.add_argument(
        "--protect",
        action="append",
        default=[],
        metavar="DIR",
        help="directory to protect (repeatable)",
    )
    p.add_argument(
        "--mongodb",
        action="append",
        default=[],
        metavar="URI",
        help="MongoDB URI to protect (repeatable)",
    )
    p.add_argument(
        "--encrypt",
        action="store_true",
        help="encrypt everything, not only secret files (the key file is created either way)",
    )
    p.add_argument(
        "--api", action="store_true", help="serve the HTTP API from `hindsight run` ([api])"
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Validate everything first, then create key, repository and config, in that order."""
    config_path = Path(args.config or CONFIG_FILENAME).absolute()
    if config_path.exists():
        raise ConfigError(f"{config_path} already exists; edit it, or remove it to start over")
    relative_ok = config_path.parent == Path.cwd()
    for d in args.protect:
        if not Path(d).is_dir():
            raise ConfigError(f"--protect {d}: not a directory")
    text = render_default_config(
        repository=_path_text(args.repo, relative_ok),
        protect=[_path_text(d, relative_ok) for d in args.protect],
        mongodb=args.mongodb,
        encrypt=args.encrypt,
        key_file=_path_text("./hindsight.key", relative_ok),
        api=getattr(args, "api", False),
    )
    config = _validated(config_path, text)
    secret = _new_secret(config.storage.encryption)
    try:
        Repository.init(config.storage.repository, secret, encrypt_all=args.encrypt)
    except BaseException:
        if secret.passphrase is None:
            config.storage.encryption.key_file.unlink()
        raise
    atomic_write(config_path, text.encode())
    report = _report(config_path, config, secret, args.encrypt)
    emit(args.json, report, lambda: _text(report))
    return 0


def _path_text(path: str, relative_ok: bool) -> str:
    return path if relative_ok else str(Path(path).absolute())


def _validated(config_path: Path, text: str) -> Any:
    """Load the rendered text exactly as later commands will, before anything is created."""
    probe = config_path.with_name(f".{config_path.name}.{os.getpid()}.check{config_path.suffix}")
    try:
        probe.write_text(text)
        return load_config(probe)
    finally:
        with contextlib.suppress(FileNotFoundError):
            probe.unlink()


def _new_secret(enc: Any) -> MasterSecret:
    passphrase = os.environ.get(enc.passphrase_env)
    if passphrase:
        return MasterSecret(passphrase=passphrase, origin=f"${enc.passphrase_env}")
    return create_key_file(enc.key_file)


def _report(
    config_path: Path, config: Any, secret: MasterSecret, encrypt_all: bool
) -> dict[str, Any]:
    uses_key_file = secret.passphrase is None
    enc = config.storage.encryption
    return {
        "config": str(config_path),
        "repository": str(config.storage.repository),
        "mode": "aes-256-gcm" if encrypt_all else "secrets",
        "encrypted": encrypt_all,
        "key_file": str(enc.key_file) if uses_key_file else None,
        "passphrase_env": None if uses_key_file else enc.passphrase_env,
        "secret_globs": _secret_globs(config),
        "protected_dirs": [str(s.path) for s in config.sources.filesystem],
        "mongodb_sources": len(config.sources.mongodb),
    }


def _secret_globs(config: Any) -> list[str]:
    """The globs that class files as secrets, over every source (the defaults if none)."""
    sources = config.sources.filesystem
    globs = [g for s in sources for g in s.secrets] if sources else DEFAULT_SECRETS
    return list(dict.fromkeys(globs))


def _text(r: dict[str, Any]) -> str:
    lines = [f"Wrote {r['config']}", f"Created repository {r['repository']}"]
    key = f"the key file {r['key_file']} (mode 0600)" if r["key_file"] else None
    key = key or f"the passphrase from ${r['passphrase_env']}"
    lost = "key file" if r["key_file"] else "passphrase"
    if r["encrypted"]:
        lines += [
            f"Encryption: everything is encrypted, with {key}.",
            *_keep_copy(r),
            f"Losing the {lost} loses the backups: nothing can decrypt them without it.",
        ]
    else:
        lines += [
            "Encryption: the journal and ordinary file contents are NOT encrypted "
            "(use `hindsight init --encrypt` to encrypt everything).",
            f"Secret files ({', '.join(r['secret_globs']) or 'none configured'}) are always "
            f"encrypted, with {key}.",
            *_keep_copy(r),
            f"Losing the {lost} loses the backups of the secret files: "
            "nothing can decrypt them without it.",
        ]
    lines.append("Next: `hindsight status`")
    return "\n".join(lines)


def _keep_copy(r: dict[str, Any]) -> list[str]:
    if not r["key_file"]:
        return []
    return ["IMPORTANT: copy the key file somewhere safe, away from this machine."]
