"""The one place that turns configuration into concrete objects (repository, keys, backends)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import ConfigurationError, InvalidURI

from capture.mongo_state import KnownMongo
from capture.mongodb import MongoCapture, MongoTarget
from capture.paths import FileRoot
from hindsight.alerts import AlertSettings
from hindsight.config import Config, EncryptionConfig, MongoSource, redact
from journal.errors import ConfigError
from journal.keys import MasterSecret, read_key_file
from journal.log import Durability
from journal.protocols import EventSink
from journal.repository import Repository

__all__ = ["alert_settings", "file_roots", "mongo_captures", "open_repository", "resolve_secret"]

MONGO_TIMEOUT_MS = 5000


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


def mongo_captures(
    config: Config, sink: EventSink, known: KnownMongo, *, only: Sequence[str] = ()
) -> list[MongoCapture]:
    """One capture per configured deployment (or those named in ``only``), resuming from
    ``known`` once it holds the journal's replay."""
    return [
        MongoCapture(
            MongoTarget(s.name, s.databases, s.collections),
            mongo_client(s),
            sink,
            known.deployment(s.name),
            full_document=s.full_document,
            redact=_redactor(s.uri),
        )
        for s in config.sources.mongodb
        if not only or s.name in only
    ]


def mongo_client(source: MongoSource) -> MongoClient[RawBSONDocument]:
    """A client that hands documents over as exact BSON and fails fast when the server is
    down (capture retries; it never waits on one call for long)."""
    try:
        return MongoClient(
            source.uri,
            document_class=RawBSONDocument,
            appname="hindsight",
            connect=False,
            serverSelectionTimeoutMS=MONGO_TIMEOUT_MS,
            connectTimeoutMS=MONGO_TIMEOUT_MS,
        )
    except (ConfigurationError, InvalidURI) as exc:
        raise ConfigError(
            f"sources.mongodb ({source.redacted_uri}): {_redactor(source.uri)(str(exc))}; "
            "fix the uri in the config"
        ) from exc


def _redactor(uri: str) -> Callable[[str], str]:
    """Masks the URI's password wherever it shows up in a driver message."""
    password = urlsplit(uri).password or ""

    def clean(text: str) -> str:
        text = redact(text)
        for secret in {password, unquote(password)} - {""}:
            text = text.replace(secret, "***")
        return text

    return clean


def alert_settings(config: Config, environ: Mapping[str, str] = os.environ) -> AlertSettings:
    """Where alerts go, from ``[monitoring]``; the SMTP password from its environment
    variable, so it is never in the file."""
    m = config.monitoring
    return AlertSettings(
        webhook_url=m.alert_webhook,
        webhook_format=m.alert_webhook_format,
        smtp_host=m.smtp_host,
        smtp_port=m.smtp_port,
        smtp_starttls=m.smtp_starttls,
        smtp_username=m.smtp_username,
        smtp_password=environ.get(m.smtp_password_env, ""),
        mail_from=m.alert_email_from,
        mail_to=m.alert_email_to,
        cooldown_s=m.alert_cooldown_s,
        capture_lag_s=m.alert_capture_lag_s,
        quota_warn_percent=m.alert_quota_percent,
    )
