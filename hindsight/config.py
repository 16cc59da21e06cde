"""The only reader of configuration: ``hindsight.toml`` (or ``.json``) into frozen dataclasses.

Terms used in messages and docstrings:

key
    A setting named by its dotted path, e.g. ``storage.compression_level`` or
    ``sources.filesystem[0].path``. Every error names the key, the value given and what is
    allowed; unknown keys are errors so a typo never silently falls back to a default.
reference
    ``${NAME}`` inside a string value, replaced by the environment variable ``NAME`` (an unset
    variable is an error); ``$$`` is a literal ``$``. Secrets stay in the environment.
secret
    A password inside a URI. Errors and ``repr`` show it masked (``mongodb://user:***@host``).

Each dataclass field carries its own spec (type, default, check, words for what is allowed) in
its metadata, so one generic reader (``hindsight/config_fields.py``) validates every table the
same way. Relative paths resolve against the config file's directory, so the daemon, the CLI and
cron see the same repository whatever their working directory. Components never receive these
objects as dicts: ``hindsight/wiring.py`` hands them plain typed arguments.
"""

from __future__ import annotations

import collections
import json
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from capture.mongo_target import DEFAULT_COLLECTIONS
from hindsight.config_fields import (
    MONGO_URI,
    REQUIRED,
    SOURCE_NAME,
    WEBHOOK,
    Context,
    Field,
    Nested,
    bool_spec,
    cron_spec,
    duration_spec,
    enum_spec,
    env_name_spec,
    int_spec,
    is_collections,
    make,
    mask_uri,
    names_spec,
    path_spec,
    redact,
    size_spec,
    spec,
)
from hindsight.config_template import render_default_config
from journal.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAME",
    "DEFAULT_COLLECTIONS",
    "DEFAULT_EXCLUDE",
    "DEFAULT_EXPECTED_FILES",
    "DEFAULT_INCLUDE",
    "DEFAULT_SECRETS",
    "LOG_INCLUDE",
    "BackupConfig",
    "Compression",
    "Config",
    "ConflictResolution",
    "Durability",
    "EncryptionConfig",
    "FilesystemSource",
    "LogLevel",
    "MongoSource",
    "MonitoringConfig",
    "RecoveryConfig",
    "RetentionConfig",
    "ScanConfig",
    "SourcesConfig",
    "StorageConfig",
    "find_config_path",
    "default_config",
    "load_config",
    "redact",
    "render_default_config",
]

CONFIG_FILENAME: Final = "hindsight.toml"
"""Looked for in the working directory when neither ``--config`` nor the env var is given."""
CONFIG_ENV: Final = "HINDSIGHT_CONFIG"
"""Environment variable naming the config file; lets cron and systemd units skip ``--config``."""
DEFAULT_INCLUDE: Final = (
    *(".env", "config.py", "package.json", "requirements.txt"),
    *("conocimiento_consolidado.json", "base_conocimiento_*.json", "kb_populated_*.json"),
    *("catalogo*.json", "*catalog*.json", "productos*.json"),
    *("python-scripts/**", "src/**", "n8n_workflows/**", "test_scenarios/**"),
)
"""The chatbot profile: configuration, knowledge base and application files from the brief."""
DEFAULT_EXCLUDE: Final = (
    *("**/node_modules/**", "**/.git/**", "**/.venv/**", "**/__pycache__/**"),
    *("**/*.tmp", "**/*.swp", "**/*~", "**/.cache/**"),
)
"""Reproducible or version-controlled trees that would only bloat the journal."""
DEFAULT_SECRETS: Final = (".env", ".env.*", "*.pem", "*.key", "*credentials*", "*secret*")
"""Files whose contents are always stored encrypted and never shown: keys and credentials."""
DEFAULT_EXPECTED_FILES: Final = ("conocimiento_consolidado.json",)
"""Files ``recover scan`` expects to exist: the consolidated knowledge base the chatbot
answers from (the other knowledge base names are patterns an installation may not have)."""
LOG_INCLUDE: Final = ("*.log", "**/*.log", "logs/**")
"""Globs added to a filesystem source's ``include`` when its ``include_logs`` is true."""

Compression = Literal["zstd", "none"]
"""How segments and restore points are compressed."""
Durability = Literal["batch", "interval", "none"]
"""When appends are fsynced: per batch, on a timer, or never (tests)."""
"""How often a restore point is a full snapshot instead of a delta."""
ConflictResolution = Literal["skip", "overwrite", "rename", "merge", "prompt"]
FullDocument = Literal["updateLookup", "required", "whenAvailable"]
MONGO_SOURCE_NAME: Final = Field(
    "str",
    "mongodb",
    "a name without / or \\ (default: mongodb)",
    SOURCE_NAME.check,
)
"""What a restore does with an existing, differing target."""
LogLevel = Literal["debug", "info", "warning", "error"]
"""Least severe log level written."""

_MIB: Final = 1024 * 1024


# --- the typed result -------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptionConfig:
    """Where the repository key comes from.

    ``enabled`` encrypts everything; when False the journal and ordinary file contents are
    stored in clear, while secret files are still encrypted with the same key.
    """

    enabled: bool = field(metadata=bool_spec(False))
    key_file: Path = field(metadata=path_spec("./hindsight.key"))
    key_env: str = field(metadata=env_name_spec("HINDSIGHT_KEY"))
    passphrase_env: str = field(metadata=env_name_spec("HINDSIGHT_PASSPHRASE"))


@dataclass(frozen=True)
class LocalStorageConfig:
    """Limits of the local repository."""

    max_size: str = field(metadata=size_spec(""))


@dataclass(frozen=True)
class StorageConfig:
    """The repository: where it lives, how it compresses, and when appends reach the disk."""

    repository: Path = field(metadata=path_spec("./backups"))
    compression: Compression = field(metadata=enum_spec("zstd", get_args(Compression)))
    compression_level: int = field(metadata=int_spec(3, 1, 22))
    durability: Durability = field(metadata=enum_spec("batch", get_args(Durability)))
    fsync_interval_ms: int = field(metadata=int_spec(200, 1, 60_000))
    segment_max_bytes: int = field(metadata=int_spec(64 * _MIB, _MIB, note=" (1 MiB)"))
    segment_max_age_s: int = field(metadata=int_spec(3600, 1))
    encryption: EncryptionConfig = field(metadata=spec(Nested(EncryptionConfig)))
    local: LocalStorageConfig = field(metadata=spec(Nested(LocalStorageConfig)))


@dataclass(frozen=True)
class FullRetentionConfig:
    """Which full backups pruning keeps: any rule keeps a backup (see compaction.retention)."""

    keep_last: int = field(metadata=int_spec(1, 0))
    keep_hourly: int = field(metadata=int_spec(0, 0))
    keep_daily: int = field(metadata=int_spec(0, 0))
    keep_weekly: int = field(metadata=int_spec(0, 0))
    keep_monthly: int = field(metadata=int_spec(0, 0))
    keep_yearly: int = field(metadata=int_spec(0, 0))
    keep_within: str = field(metadata=duration_spec("30d"))


@dataclass(frozen=True)
class IncrementalRetentionConfig(FullRetentionConfig):
    """Which incremental backups pruning keeps; the same rules, other defaults."""

    keep_last: int = field(metadata=int_spec(0, 0))
    keep_within: str = field(metadata=duration_spec("7d"))


@dataclass(frozen=True)
class RetentionConfig:
    """How long every second stays restorable, and which backups are kept per type."""

    point_in_time: str = field(metadata=duration_spec("7d"))
    full: FullRetentionConfig = field(metadata=spec(Nested(FullRetentionConfig)))
    incremental: IncrementalRetentionConfig = field(
        metadata=spec(Nested(IncrementalRetentionConfig))
    )


@dataclass(frozen=True)
class ScheduleConfig:
    """When each job runs, as cron expressions in local time; "" = never."""

    full: str = field(metadata=cron_spec("0 2 * * 0"))
    incremental: str = field(metadata=cron_spec("0 3 * * *"))
    verify: str = field(metadata=cron_spec("30 4 * * *"))
    prune: str = field(metadata=cron_spec("0 5 * * *"))
    scan: str = field(metadata=cron_spec(""))


@dataclass(frozen=True)
class BackupConfig:
    """When backups are taken and pruned, whether they are verified, how often files rescan."""

    verify_after_backup: bool = field(metadata=bool_spec(True))
    scan_interval_s: int = field(metadata=int_spec(900, 10))
    schedule: ScheduleConfig = field(metadata=spec(Nested(ScheduleConfig)))
    retention: RetentionConfig = field(metadata=spec(Nested(RetentionConfig)))


@dataclass(frozen=True)
class ScanConfig:
    """What ``hindsight recover scan`` reports: files that must exist, and how recent and
    how large a loss the journal captured must be to count as one."""

    expected_files: tuple[str, ...] = field(
        metadata=names_spec(
            DEFAULT_EXPECTED_FILES, "an array of globs ([] = none)", lambda _v: True
        )
    )
    window: str = field(metadata=duration_spec("24h"))
    bulk_delete_threshold: int = field(metadata=int_spec(100, 1))
    count_drop_percent: int = field(metadata=int_spec(20, 1, 100))


@dataclass(frozen=True)
class RecoveryConfig:
    """Defaults for restores, which the CLI and API may override per request."""

    conflict_resolution: ConflictResolution = field(
        metadata=enum_spec("rename", get_args(ConflictResolution))
    )
    dry_run_by_default: bool = field(metadata=bool_spec(False))
    staging_dir: Path = field(metadata=path_spec("./backups/staging"))
    scan: ScanConfig = field(metadata=spec(Nested(ScanConfig)))


@dataclass(frozen=True)
class MonitoringConfig:
    """Logging, status reporting, metrics and alerting; 0 or "" turns a feature off.

    ``alert_webhook`` may embed a token, so it is left out of ``repr``.
    """

    log_level: LogLevel = field(metadata=enum_spec("info", get_args(LogLevel)))
    status_interval_s: int = field(metadata=int_spec(60, 1))
    metrics_port: int = field(metadata=int_spec(0, 0, 65535, " (0 = off)"))
    alert_webhook: str = field(repr=False, metadata=spec(WEBHOOK))
    alert_webhook_format: str = field(metadata=enum_spec("json", ("json", "slack")))
    alert_email_to: tuple[str, ...] = field(
        metadata=names_spec((), "an array of e-mail addresses ([] = no mail)", lambda _v: True)
    )
    alert_email_from: str = field(
        metadata=spec(Field("str", "hindsight@localhost", "an e-mail address", bool))
    )
    smtp_host: str = field(metadata=spec(Field("str", "", '"" (no mail) or a host name')))
    smtp_port: int = field(metadata=int_spec(25, 1, 65535))
    smtp_starttls: bool = field(metadata=bool_spec(False))
    smtp_username: str = field(metadata=spec(Field("str", "", '"" (no login) or a user name')))
    smtp_password_env: str = field(metadata=env_name_spec("HINDSIGHT_SMTP_PASSWORD"))
    alert_cooldown_s: int = field(metadata=int_spec(3600, 0))
    alert_capture_lag_s: int = field(metadata=int_spec(60, 1))
    alert_quota_percent: int = field(metadata=int_spec(90, 1, 100))


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP API: ``hindsight serve``, or ``hindsight run`` when ``enabled``."""

    enabled: bool = field(metadata=bool_spec(False))
    host: str = field(metadata=spec(Field("str", "127.0.0.1", "a host name or IP address", bool)))
    port: int = field(metadata=int_spec(3000, 1, 65535))
    rate_limit_per_minute: int = field(metadata=int_spec(600, 0, note=" (0 = no limit)"))
    max_body_kib: int = field(metadata=int_spec(1024, 1))
    tls_cert: str = field(metadata=spec(Field("str", "", '"" (HTTP) or a PEM certificate file')))
    tls_key: str = field(metadata=spec(Field("str", "", '"" or the certificate\'s key file')))


@dataclass(frozen=True)
class FilesystemSource:
    """One protected directory tree; globs are relative to ``path``."""

    path: Path = field(metadata=path_spec(REQUIRED))
    name: str = field(metadata=spec(SOURCE_NAME))
    include: tuple[str, ...] = field(
        metadata=names_spec(DEFAULT_INCLUDE, "a non-empty array of non-empty globs")
    )
    exclude: tuple[str, ...] = field(
        metadata=names_spec(DEFAULT_EXCLUDE, "an array of globs", lambda _v: True)
    )
    include_logs: bool = field(metadata=bool_spec(False))
    secrets: tuple[str, ...] = field(
        metadata=names_spec(DEFAULT_SECRETS, "an array of globs ([] = none)", lambda _v: True)
    )

    @property
    def effective_include(self) -> tuple[str, ...]:
        """``include`` plus the log globs if ``include_logs`` is set, so capture needs one list."""
        return self.include + (LOG_INCLUDE if self.include_logs else ())


@dataclass(frozen=True)
class MongoSource:
    """One MongoDB deployment; ``uri`` may hold a password, so it is left out of ``repr``."""

    uri: str = field(repr=False, metadata=spec(MONGO_URI))
    name: str = field(metadata=spec(MONGO_SOURCE_NAME))
    databases: tuple[str, ...] = field(
        metadata=names_spec((), "an array of database names ([] = all)", lambda _: True)
    )
    collections: tuple[str, ...] = field(
        metadata=names_spec(
            DEFAULT_COLLECTIONS, 'a non-empty array of collection names, or ["*"]', is_collections
        )
    )
    full_document: str = field(metadata=enum_spec("updateLookup", get_args(FullDocument)))

    @property
    def redacted_uri(self) -> str:
        """The URI with its password masked, for logs, status output and errors."""
        return mask_uri(self.uri)


@dataclass(frozen=True)
class SourcesConfig:
    """Everything that is protected; both tuples may be empty before sources are added."""

    filesystem: tuple[FilesystemSource, ...] = field(
        metadata=spec(Nested(FilesystemSource, array=True))
    )
    mongodb: tuple[MongoSource, ...] = field(metadata=spec(Nested(MongoSource, array=True)))


@dataclass(frozen=True)
class Config:
    """The whole validated configuration plus the absolute path of the file it came from."""

    storage: StorageConfig = field(metadata=spec(Nested(StorageConfig)))
    backup: BackupConfig = field(metadata=spec(Nested(BackupConfig)))
    recovery: RecoveryConfig = field(metadata=spec(Nested(RecoveryConfig)))
    monitoring: MonitoringConfig = field(metadata=spec(Nested(MonitoringConfig)))
    api: ApiConfig = field(metadata=spec(Nested(ApiConfig)))
    sources: SourcesConfig = field(metadata=spec(Nested(SourcesConfig)))
    path: Path


# --- discovery and loading --------------------------------------------------------------------


def find_config_path(explicit: str | None, env: Mapping[str, str]) -> Path:
    """Pick the config file: ``--config FILE``, then ``$HINDSIGHT_CONFIG``, then ./hindsight.toml.

    A file named explicitly must exist; it is never silently replaced by a later candidate.
    """
    for given, origin in ((explicit, "--config"), (env.get(CONFIG_ENV), f"${CONFIG_ENV}")):
        if given:
            path = _absolute(given)
            if not path.is_file():
                problem = "is not a file" if path.exists() else "does not exist"
                raise ConfigError(f"config file {path} (from {origin}) {problem}")
            return path
    path = Path.cwd() / CONFIG_FILENAME
    if not path.is_file():
        raise ConfigError(
            f"no config file: {path} does not exist and neither --config nor ${CONFIG_ENV} "
            "is set; run `hindsight init` to create one, or pass --config FILE"
        )
    return path


def load_config(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and expand one config file; ``env`` defaults to ``os.environ``.

    The format follows the extension (``.toml`` or ``.json``). Any problem is a ConfigError
    naming the file and key, so nothing starts with a half-understood configuration.
    """
    file = _absolute(path)
    ctx = Context(file, os.environ if env is None else env)
    config = make(Config, _parse(file, ctx), ctx, "", path=file)
    _check_unique_names("filesystem", config.sources.filesystem, ctx)
    _check_unique_names("mongodb", config.sources.mongodb, ctx)
    return config


def default_config(directory: Path) -> Config:
    """The configuration an empty file in ``directory`` gives (every default)."""
    file = _absolute(directory / CONFIG_FILENAME)
    return make(Config, {}, Context(file, {}), "", path=file)


def _absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute and normalised, so messages and relative paths read cleanly."""
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


def _parse(file: Path, ctx: Context) -> Mapping[str, Any]:
    """The file's top-level table, with syntax and I/O errors translated to ConfigError."""
    if file.suffix not in (".toml", ".json"):
        raise ctx.error(f"unsupported extension {file.suffix!r}; use .toml or .json")
    try:
        text = file.read_text(encoding="utf-8")
        if file.suffix == ".toml":
            return tomllib.loads(text)
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except OSError as exc:
        raise ctx.error(f"cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # TOML, JSON (incl. duplicate keys) and UTF-8 decoding errors
        # These messages carry a position or a key, never the offending value: no secret leaks.
        raise ctx.error(f"not valid {file.suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ctx.error("the top level must be an object holding the config sections")
    return data


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Reject duplicate JSON keys, as TOML does, instead of keeping the last one silently."""
    duplicates = [
        key for key, count in collections.Counter(k for k, _ in pairs).items() if count > 1
    ]
    if duplicates:
        raise ValueError(f"duplicate key {duplicates[0]!r}")
    return dict(pairs)


def _check_unique_names(
    kind: str, sources: Sequence[FilesystemSource | MongoSource], ctx: Context
) -> None:
    """Sources of one kind are told apart by name in the journal, listings and restores."""
    names = [source.name for source in sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ctx.invalid(
                f"sources.{kind}[{i}].name", name, f"a name no other {kind} source uses"
            )
