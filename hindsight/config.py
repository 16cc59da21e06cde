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
its metadata, so one generic reader validates every table the same way. Relative paths resolve
against the config file's directory, so the daemon, the CLI and cron see the same repository
whatever their working directory. Components never receive these objects as dicts:
``hindsight/wiring.py`` hands them plain typed arguments.
"""

from __future__ import annotations

import collections
import dataclasses
import difflib
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, TypeVar, get_args

from journal.errors import ConfigError

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAME",
    "DEFAULT_COLLECTIONS",
    "DEFAULT_EXCLUDE",
    "DEFAULT_INCLUDE",
    "LOG_INCLUDE",
    "BackupConfig",
    "Compression",
    "Config",
    "ConflictResolution",
    "Durability",
    "EncryptionConfig",
    "FilesystemSource",
    "FullEvery",
    "LogLevel",
    "MongoSource",
    "MonitoringConfig",
    "RecoveryConfig",
    "RetentionConfig",
    "SourcesConfig",
    "StorageConfig",
    "find_config_path",
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
    *("python-scripts/**", "src/**", "n8n_workflows/**", "test_scenarios/**"),
)
"""The chatbot profile: configuration, knowledge base and application files from the brief."""
DEFAULT_EXCLUDE: Final = ("node_modules/**", ".git/**", ".venv/**", "**/__pycache__/**")
"""Reproducible or version-controlled trees that would only bloat the journal."""
LOG_INCLUDE: Final = ("*.log", "**/*.log", "logs/**")
"""Globs added to a filesystem source's ``include`` when its ``include_logs`` is true."""
DEFAULT_COLLECTIONS: Final = (
    *("conversations", "conversaciones", "quotes", "cotizaciones"),
    *("sessions", "context", "analytics", "users"),
)
"""The chatbot's collections from the brief (English and Spanish names); ``("*",)`` = all."""

Compression = Literal["zstd", "none"]
"""How segments and restore points are compressed."""
Durability = Literal["batch", "interval", "none"]
"""When appends are fsynced: per batch, on a timer, or never (tests)."""
FullEvery = Literal["daily", "weekly", "monthly"]
"""How often a restore point is a full snapshot instead of a delta."""
ConflictResolution = Literal["skip", "overwrite", "rename"]
"""What a restore does with an existing, differing target."""
LogLevel = Literal["debug", "info", "warning", "error"]
"""Least severe log level written."""

_MIB: Final = 1024 * 1024
_TEMPLATE: Final = "default_config.toml"
_META: Final = "hindsight.config"  # the dataclass-field metadata key holding a spec


# --- field specs ------------------------------------------------------------------------------

_REQUIRED: Final = object()
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CRON_FIELD: Final = re.compile(r"[A-Za-z0-9*/,?#-]+")
_Kind = Literal["int", "bool", "str", "path", "list"]
_KINDS: Final[dict[_Kind, Callable[[Any], bool]]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "path": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v),
}


@dataclass(frozen=True)
class _Field:
    """How one key is read: its type, default, extra check, and the words for what is allowed.

    ``derive`` computes the default from the table's other values (a source's name).
    ``uri`` marks values that may hold a password: masked in errors, left out of ``repr``.
    """

    kind: _Kind
    default: Any
    allowed: str
    check: Callable[[Any], bool] = lambda _value: True
    uri: bool = False
    derive: Callable[[dict[str, Any]], Any] | None = None


@dataclass(frozen=True)
class _Nested:
    """A subtable (``[storage.encryption]``) or, with ``array``, an array of tables."""

    cls: type
    array: bool = False


_Metadata = dict[str, _Field | _Nested]


def _spec(spec: _Field | _Nested) -> _Metadata:
    """Dataclass-field metadata carrying ``spec``; the reader, not the dataclass, has defaults."""
    return {_META: spec}


def _int(default: int, low: int, high: int | None = None, note: str = "") -> _Metadata:
    """An integer key bounded below and optionally above."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    return _spec(
        _Field("int", default, allowed + note, lambda v: low <= v <= (v if high is None else high))
    )


def _enum(default: str, choices: tuple[str, ...]) -> _Metadata:
    """A string key limited to a fixed set of choices."""
    allowed = "one of " + ", ".join(f'"{choice}"' for choice in choices)
    return _spec(_Field("str", default, allowed, lambda v: v in choices))


def _bool(default: bool) -> _Metadata:
    """A boolean key."""
    return _spec(_Field("bool", default, "true or false"))


def _path(default: Any) -> _Metadata:
    """A non-empty path, resolved against the config file's directory."""
    return _spec(_Field("path", default, "a non-empty path (relative to the config file)", bool))


def _env_name(default: str) -> _Metadata:
    """The name (not the value) of an environment variable, so secrets stay out of the file."""
    allowed = "an environment variable name (letters, digits, _; not starting with a digit)"
    return _spec(_Field("str", default, allowed, lambda v: _ENV_NAME.fullmatch(v) is not None))


def _names(
    default: tuple[str, ...], allowed: str, check: Callable[[Any], bool] = bool
) -> _Metadata:
    """An array of non-empty strings; ``check`` sees the whole list (default: non-empty)."""
    return _spec(_Field("list", default, allowed, lambda v: all(v) and check(v)))


def _is_cron(value: str) -> bool:
    """Five fields of digits, names and ``* / , - ? #``; the scheduler checks the ranges."""
    fields = value.split()
    return len(fields) == 5 and all(_CRON_FIELD.fullmatch(f) for f in fields)


def _is_source_name(value: str) -> bool:
    """A name usable as one path component in listings and restore targets."""
    return value not in ("", ".", "..") and not re.search(r"[/\\\x00-\x1f\x7f]", value)


def _is_collections(value: list[str]) -> bool:
    """Non-empty, and ``"*"`` only on its own, so "all" is never mixed with a selection."""
    return bool(value) and ("*" not in value or value == ["*"])


_WEBHOOK: Final = _Field(
    "str",
    "",
    '"" (off) or an http:// or https:// URL',
    lambda v: v == "" or re.fullmatch(r"https?://\S+", v) is not None,
    uri=True,
)
_SOURCE_NAME: Final = _Field(
    "str",
    None,
    "a name without / or \\ (default: the last component of path)",
    _is_source_name,
    derive=lambda values: values["path"].name,
)
_MONGO_URI: Final = _Field(
    "str",
    _REQUIRED,
    "a URI starting with mongodb:// or mongodb+srv://",
    lambda v: v.startswith(("mongodb://", "mongodb+srv://")),
    uri=True,
)


# --- the typed result -------------------------------------------------------------------------


@dataclass(frozen=True)
class EncryptionConfig:
    """Where the repository key comes from; ``enabled`` False means data is stored in clear."""

    enabled: bool = field(metadata=_bool(False))
    key_file: Path = field(metadata=_path("./hindsight.key"))
    key_env: str = field(metadata=_env_name("HINDSIGHT_KEY"))
    passphrase_env: str = field(metadata=_env_name("HINDSIGHT_PASSPHRASE"))


@dataclass(frozen=True)
class StorageConfig:
    """The repository: where it lives, how it compresses, and when appends reach the disk."""

    repository: Path = field(metadata=_path("./backups"))
    compression: Compression = field(metadata=_enum("zstd", get_args(Compression)))
    compression_level: int = field(metadata=_int(3, 1, 22))
    durability: Durability = field(metadata=_enum("batch", get_args(Durability)))
    fsync_interval_ms: int = field(metadata=_int(200, 1, 60_000))
    segment_max_bytes: int = field(metadata=_int(64 * _MIB, _MIB, note=" (1 MiB)"))
    segment_max_age_s: int = field(metadata=_int(3600, 1))
    encryption: EncryptionConfig = field(metadata=_spec(_Nested(EncryptionConfig)))


@dataclass(frozen=True)
class RetentionConfig:
    """Which restore points pruning keeps; the policy functions live in ``compaction``."""

    keep_last: int = field(metadata=_int(7, 1))
    keep_daily: int = field(metadata=_int(7, 0))
    keep_weekly: int = field(metadata=_int(4, 0))
    keep_monthly: int = field(metadata=_int(12, 0))
    max_age_days: int = field(metadata=_int(0, 0, note=" (0 = no limit)"))


@dataclass(frozen=True)
class BackupConfig:
    """When restore points are taken, which are full, and whether they are verified."""

    schedule: str = field(
        metadata=_spec(_Field("str", "0 3 * * *", 'a 5-field cron like "0 3 * * *"', _is_cron))
    )
    full_every: FullEvery = field(metadata=_enum("weekly", get_args(FullEvery)))
    verify_after_backup: bool = field(metadata=_bool(True))
    retention: RetentionConfig = field(metadata=_spec(_Nested(RetentionConfig)))


@dataclass(frozen=True)
class RecoveryConfig:
    """Defaults for restores, which the CLI and API may override per request."""

    conflict_resolution: ConflictResolution = field(
        metadata=_enum("rename", get_args(ConflictResolution))
    )
    dry_run_by_default: bool = field(metadata=_bool(False))
    staging_dir: Path = field(metadata=_path("./backups/staging"))


@dataclass(frozen=True)
class MonitoringConfig:
    """Logging, status reporting, metrics and alerting; 0 or "" turns a feature off.

    ``alert_webhook`` may embed a token, so it is left out of ``repr``.
    """

    log_level: LogLevel = field(metadata=_enum("info", get_args(LogLevel)))
    status_interval_s: int = field(metadata=_int(60, 1))
    metrics_port: int = field(metadata=_int(0, 0, 65535, " (0 = off)"))
    alert_webhook: str = field(repr=False, metadata=_spec(_WEBHOOK))


@dataclass(frozen=True)
class FilesystemSource:
    """One protected directory tree; globs are relative to ``path``."""

    path: Path = field(metadata=_path(_REQUIRED))
    name: str = field(metadata=_spec(_SOURCE_NAME))
    include: tuple[str, ...] = field(
        metadata=_names(DEFAULT_INCLUDE, "a non-empty array of non-empty globs")
    )
    exclude: tuple[str, ...] = field(
        metadata=_names(DEFAULT_EXCLUDE, "an array of globs", lambda _v: True)
    )
    include_logs: bool = field(metadata=_bool(False))

    @property
    def effective_include(self) -> tuple[str, ...]:
        """``include`` plus the log globs if ``include_logs`` is set, so capture needs one list."""
        return self.include + (LOG_INCLUDE if self.include_logs else ())


@dataclass(frozen=True)
class MongoSource:
    """One MongoDB deployment; ``uri`` may hold a password, so it is left out of ``repr``."""

    uri: str = field(repr=False, metadata=_spec(_MONGO_URI))
    databases: tuple[str, ...] = field(
        metadata=_names((), "an array of database names ([] = all)", lambda _: True)
    )
    collections: tuple[str, ...] = field(
        metadata=_names(
            DEFAULT_COLLECTIONS, 'a non-empty array of collection names, or ["*"]', _is_collections
        )
    )

    @property
    def redacted_uri(self) -> str:
        """The URI with its password masked, for logs, status output and errors."""
        return _mask_uri(self.uri)


@dataclass(frozen=True)
class SourcesConfig:
    """Everything that is protected; both tuples may be empty before sources are added."""

    filesystem: tuple[FilesystemSource, ...] = field(
        metadata=_spec(_Nested(FilesystemSource, array=True))
    )
    mongodb: tuple[MongoSource, ...] = field(metadata=_spec(_Nested(MongoSource, array=True)))


@dataclass(frozen=True)
class Config:
    """The whole validated configuration plus the absolute path of the file it came from."""

    storage: StorageConfig = field(metadata=_spec(_Nested(StorageConfig)))
    backup: BackupConfig = field(metadata=_spec(_Nested(BackupConfig)))
    recovery: RecoveryConfig = field(metadata=_spec(_Nested(RecoveryConfig)))
    monitoring: MonitoringConfig = field(metadata=_spec(_Nested(MonitoringConfig)))
    sources: SourcesConfig = field(metadata=_spec(_Nested(SourcesConfig)))
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
    ctx = _Context(file, os.environ if env is None else env)
    config = _make(Config, _parse(file, ctx), ctx, "", path=file)
    _check_unique_names(config.sources.filesystem, ctx)
    return config


def _absolute(path: str | os.PathLike[str]) -> Path:
    """``path`` made absolute and normalised, so messages and relative paths read cleanly."""
    return Path(os.path.normpath(Path(path).expanduser().absolute()))


def _parse(file: Path, ctx: _Context) -> Mapping[str, Any]:
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


def _check_unique_names(sources: Sequence[FilesystemSource], ctx: _Context) -> None:
    """Filesystem sources are told apart by name in listings and restores."""
    names = [source.name for source in sources]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ctx.invalid(
                f"sources.filesystem[{i}].name", name, "a name no other filesystem source uses"
            )


# --- the generic reader -----------------------------------------------------------------------

_T = TypeVar("_T")
_REFERENCE: Final = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|(\{))")


@dataclass(frozen=True)
class _Context:
    """What every reader needs: the file (for messages and relative paths) and the env."""

    file: Path
    env: Mapping[str, str]

    def error(self, text: str) -> ConfigError:
        """A ConfigError that starts with the file, so the user knows which one to fix."""
        return ConfigError(f"{self.file}: {text}")

    def invalid(
        self, key: str, value: Any, allowed: str, *, uri: bool = False, wrong_type: bool = False
    ) -> ConfigError:
        """The standard bad-value error: key, value given (masked) and what is allowed."""
        got = f" (got {_type_name(value)})" if wrong_type else ""
        return self.error(f"{key} = {_show(value, uri)}{got} is not valid; allowed: {allowed}")

    def resolve(self, value: str) -> Path:
        """A path from the file, made absolute against the file's directory (no symlink walk)."""
        return Path(os.path.normpath(self.file.parent / os.path.expanduser(value)))

    def expand(self, value: Any, key: str) -> Any:
        """Replace ``${NAME}`` references in a string or in the strings of an array."""
        if isinstance(value, str):
            return _REFERENCE.sub(lambda match: self._substitute(match, key), value)
        if isinstance(value, list):
            return [self.expand(item, key) for item in value]
        return value

    def _substitute(self, match: re.Match[str], key: str) -> str:
        """One reference: ``$$`` -> ``$``, ``${NAME}`` -> its value, anything else an error."""
        name, malformed = match.group(1), match.group(2)
        if malformed:
            raise self.error(
                f"{key} has a malformed ${{...}} reference; "
                "write ${NAME} for an environment variable or $$ for a literal $"
            )
        if name is None:
            return "$"
        if name not in self.env:
            raise self.error(f"{key} refers to environment variable {name}, which is not set")
        return self.env[name]


def _make(cls: type[_T], table: Mapping[str, Any], ctx: _Context, where: str, **extra: Any) -> _T:
    """Build ``cls`` from ``table`` by the specs in its fields' metadata; ``extra`` is not read."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    specs = {f.name: f.metadata[_META] for f in fields if _META in f.metadata}
    _reject_unknown(table, list(specs), ctx, where)
    values = {
        name: _read(table, name, spec, ctx, f"{where}.{name}" if where else name)
        for name, spec in specs.items()
    }
    for name, spec in specs.items():  # derived defaults see the other values, then get checked
        if isinstance(spec, _Field) and spec.derive and values[name] is None:
            values[name] = spec.derive(values)
            if not spec.check(values[name]):
                raise ctx.invalid(f"{where}.{name}", values[name], spec.allowed)
    return cls(**values, **extra)


def _reject_unknown(table: Mapping[str, Any], known: list[str], ctx: _Context, where: str) -> None:
    """Fail on the first key not in ``known``, suggesting the closest known one."""
    for name in table:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            key = f"{where}.{name}" if where else name
            raise ctx.error(f"unknown key {key}{hint}; allowed here: {', '.join(known)}")


def _read(table: Mapping[str, Any], name: str, spec: Any, ctx: _Context, key: str) -> Any:
    """One key: a value, a subtable, or an array of tables."""
    if isinstance(spec, _Field):
        return _value(table, name, spec, ctx, key)
    value = table.get(name, [] if spec.array else {})
    if not spec.array:
        if not isinstance(value, dict):
            raise ctx.invalid(key, value, f"a table ([{key}])", uri=True, wrong_type=True)
        return _make(spec.cls, value, ctx, key)
    if not (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
        raise ctx.invalid(key, value, f"an array of tables ([[{key}]])", uri=True, wrong_type=True)
    return tuple(_make(spec.cls, item, ctx, f"{key}[{i}]") for i, item in enumerate(value))


def _value(table: Mapping[str, Any], name: str, spec: _Field, ctx: _Context, key: str) -> Any:
    """One key's checked value, or its default when absent; paths resolved, arrays as tuples."""
    if name in table:
        value = ctx.expand(table[name], key)
        if not _KINDS[spec.kind](value):
            raise ctx.invalid(key, value, spec.allowed, uri=spec.uri, wrong_type=True)
        if not spec.check(value):
            raise ctx.invalid(key, value, spec.allowed, uri=spec.uri)
    elif spec.default is _REQUIRED:
        raise ctx.error(f"{key} is required; allowed: {spec.allowed}")
    else:
        value = spec.default
    if value is None:
        return None
    if spec.kind == "path":
        return ctx.resolve(value)
    return tuple(value) if spec.kind == "list" else value


# --- showing values without secrets -----------------------------------------------------------

_CREDENTIALS: Final = re.compile(r"(://[^:/@\s\"]*:).*@")
_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def redact(text: str) -> str:
    """Mask the password of every ``scheme://user:password@`` in ``text`` (greedily, to be safe).

    Use it on anything shown to people that may contain a connection string.
    """
    return _CREDENTIALS.sub(r"\1***@", text)


def _mask_uri(uri: str) -> str:
    """Mask a URI's password even without a scheme; everything up to the last ``@`` counts."""
    credentials, at, rest = uri.rpartition("@")
    if not at:
        return uri
    scheme = _SCHEME.match(credentials)
    head = scheme.group(0) if scheme else ""
    user, colon, _ = credentials[len(head) :].partition(":")
    return f"{head}{user}{':***' if colon else ''}@{rest}"


def _show(value: Any, uri: bool = False) -> str:
    """A value as the user would write it, secrets masked, cut short if long."""
    if uri and isinstance(value, str):
        value = _mask_uri(value)
    text = redact(json.dumps(value, ensure_ascii=False, default=str))
    return text if len(text) <= 120 else text[:117] + "..."


def _type_name(value: Any) -> str:
    """The config-file word for a Python value's type, for 'wrong type' messages."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return "table" if isinstance(value, dict) else names.get(type(value), type(value).__name__)


# --- rendering the commented default file -----------------------------------------------------

_HEADER: Final = re.compile(r"\[\[?\s*([A-Za-z0-9_.]+)\s*\]\]?\s*(#.*)?")
_LITERAL_DOLLAR: Final = re.compile(r"\$(?!\{[A-Za-z_][A-Za-z0-9_]*\})")
_TOML_ESCAPES: Final = {c: f"\\u{c:04x}" for c in [*range(0x20), 0x7F]} | {
    ord('"'): '\\"',
    ord("\\"): "\\\\",
}


def render_default_config(
    repository: str = "./backups",
    protect: Sequence[str] = (),
    mongodb: Sequence[str] = (),
    encrypt: bool = False,
    key_file: str = "./hindsight.key",
) -> str:
    """The commented default ``hindsight.toml`` for ``hindsight init``, with its options applied.

    Values are written as given: relative paths resolve against the file's directory when
    loaded (pass absolute paths for input relative to the working directory), and
    ``${NAME}`` references are kept so passwords stay in the environment. Loading the
    text back gives exactly these values; the staging directory moves under the repository.
    """
    text = resources.files("hindsight").joinpath(_TEMPLATE).read_text(encoding="utf-8")
    staging = repository.rstrip("/\\") + "/staging"
    for section, key, value in (
        ("storage", "repository", _toml_string(repository)),
        ("storage.encryption", "enabled", "true" if encrypt else "false"),
        ("storage.encryption", "key_file", _toml_string(key_file)),
        ("recovery", "staging_dir", _toml_string(staging)),
    ):
        text = _set_key(text, section, key, value)
    tables = [f"\n[[sources.filesystem]]\npath = {_toml_string(p)}\n" for p in protect]
    tables += [f"\n[[sources.mongodb]]\nuri = {_toml_string(u)}\n" for u in mongodb]
    return text + "".join(tables)


def _set_key(text: str, section: str, key: str, value: str) -> str:
    """Replace the ``key = ...`` line of ``[section]`` in the template, keeping its comments."""
    lines = text.splitlines(keepends=True)
    current = ""
    for i, line in enumerate(lines):
        header = _HEADER.fullmatch(line.strip())
        if header:
            current = header.group(1)
        elif current == section and line.startswith(f"{key} ="):
            lines[i] = f"{key} = {value}\n"
            return "".join(lines)
    raise LookupError(f"template {_TEMPLATE} has no {section}.{key} line")


def _toml_string(value: str) -> str:
    """A TOML basic string that loads back to ``value``, with literal ``$`` escaped as ``$$``."""
    return '"' + _LITERAL_DOLLAR.sub("$$", value).translate(_TOML_ESCAPES) + '"'
