"""The one place that turns configuration into concrete objects (repository, keys, backends)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from capture.paths import FileRoot
from hindsight.config import Config, EncryptionConfig
from journal.errors import ConfigError
from journal.keys import MasterSecret, read_key_file
from journal.log import Durability
from journal.repository import Repository

__all__ = ["file_roots", "open_repository", "resolve_secret"]


def resolve_secret(
    enc: EncryptionConfig, env: Mapping[str, str] | None = None, key_file: Path | None = None
) -> MasterSecret | None:
    """The master secret: ``--key-file``, then the key env var, the passphrase env var, the
    configured key file.

    With encryption off (only secret files are encrypted) a missing key file is not an
    error: the result is None and the repository opens without its key ring.
    """
    env = os.environ if env is None else env
    if key_file is not None:
        return read_key_file(key_file)
    if env.get(enc.key_env):
        return MasterSecret.from_base64(env[enc.key_env], f"${enc.key_env}")
    if env.get(enc.passphrase_env):
        return MasterSecret(passphrase=env[enc.passphrase_env], origin=f"${enc.passphrase_env}")
    if not enc.key_file.exists():
        if not enc.enabled:
            return None
        raise ConfigError(
            f"encryption is enabled but the key file {enc.key_file} does not exist; restore it "
            f"from your safe copy, or set ${enc.key_env} or ${enc.passphrase_env}"
        )
    return read_key_file(enc.key_file)


def open_repository(
    config: Config, *, writable: bool = False, key_file: Path | None = None
) -> Repository:
    """Open the configured repository with the configured codec and durability."""
    storage = config.storage
    return Repository.open(
        storage.repository,
        resolve_secret(storage.encryption, key_file=key_file),
        writable=writable,
        compression_level=storage.compression_level if storage.compression == "zstd" else None,
        durability=Durability(storage.durability),
        fsync_interval_ms=storage.fsync_interval_ms,
        segment_max_bytes=storage.segment_max_bytes,
        segment_max_age_s=storage.segment_max_age_s,
    )


def file_roots(config: Config) -> list[FileRoot]:
    """The configured filesystem sources as capture's roots, secret globs included."""
    return [
        FileRoot.of(s.name, s.path, s.effective_include, s.exclude, s.secrets)
        for s in config.sources.filesystem
    ]
