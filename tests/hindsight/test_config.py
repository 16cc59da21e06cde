"""hindsight.config through its public API: loading, validation, discovery and rendering."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hindsight.config import (
    CONFIG_ENV,
    CONFIG_FILENAME,
    DEFAULT_COLLECTIONS,
    DEFAULT_EXCLUDE,
    DEFAULT_INCLUDE,
    DEFAULT_SECRETS,
    LOG_INCLUDE,
    Config,
    find_config_path,
    load_config,
    redact,
    render_default_config,
)
from journal.errors import ConfigError

SECRET = "s3cr3t-Pa55"


def write(directory: Path, text: str, name: str = CONFIG_FILENAME) -> Path:
    """Write a config file and return its path."""
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(directory: Path, text: str, env: dict[str, str] | None = None) -> Config:
    """Load TOML text from a file in ``directory`` with an explicit environment."""
    return load_config(write(directory, text), env=env or {})


def error_for(directory: Path, text: str, env: dict[str, str] | None = None) -> str:
    """The ConfigError message loading ``text`` produces."""
    with pytest.raises(ConfigError) as info:
        load_text(directory, text, env)
    return str(info.value)


# --- defaults and the template ------------------------------------------------------------------


def test_empty_file_loads_documented_defaults(tmp_path: Path) -> None:
    config = load_text(tmp_path, "")
    assert config.path == tmp_path / CONFIG_FILENAME, f"path: {config.path}"
    assert config.storage.repository == tmp_path / "backups", "repository next to the config"
    assert (config.storage.compression, config.storage.compression_level) == ("zstd", 3)
    assert config.storage.durability == "batch", "fsync per batch is the safe default"
    assert (config.storage.fsync_interval_ms, config.storage.segment_max_age_s) == (200, 3600)
    assert config.storage.segment_max_bytes == 64 * 1024 * 1024
    assert config.storage.encryption.enabled is False
    assert config.storage.encryption.key_file == tmp_path / "hindsight.key"
    assert config.storage.encryption.key_env == "HINDSIGHT_KEY"
    assert config.storage.encryption.passphrase_env == "HINDSIGHT_PASSPHRASE"
    schedule = dataclasses.astuple(config.backup.schedule)
    assert schedule == ("0 2 * * 0", "0 3 * * *", "30 4 * * *", "0 5 * * *", ""), schedule
    assert config.backup.verify_after_backup is True
    retention = config.backup.retention
    assert retention.point_in_time == "7d"
    assert dataclasses.astuple(retention.full) == (1, 0, 0, 0, 0, 0, "30d"), "brief: full 30 days"
    assert dataclasses.astuple(retention.incremental) == (0, 0, 0, 0, 0, 0, "7d"), "7 days"
    assert config.storage.local.max_size == "", "no quota unless configured"
    assert config.recovery.conflict_resolution == "rename"
    assert config.recovery.dry_run_by_default is False
    assert config.recovery.staging_dir == tmp_path / "backups" / "staging"
    assert dataclasses.astuple(config.monitoring) == (
        "info", 60, 0, "", "json", (), "hindsight@localhost", "", 25, False, "",
        "HINDSIGHT_SMTP_PASSWORD", 3600, 60, 90,
    )  # fmt: skip
    assert dataclasses.astuple(config.api) == (False, "127.0.0.1", 3000, 600, 1024, "", "")
    assert config.sources.filesystem == () and config.sources.mongodb == (), "no sources yet"


def test_template_matches_code_defaults(tmp_path: Path) -> None:
    template = load_text(tmp_path, render_default_config())
    empty = load_config(write(tmp_path, "", "empty.toml"), env={})
    assert template == dataclasses.replace(empty, path=template.path), (
        "default_config.toml and the code's defaults disagree"
    )


def dotted_keys(table: dict[str, Any], prefix: str = "") -> set[str]:
    """Every leaf key of a nested table, as dotted paths."""
    keys: set[str] = set()
    for name, value in table.items():
        if isinstance(value, dict):
            keys |= dotted_keys(value, f"{prefix}{name}.")
        else:
            keys.add(prefix + name)
    return keys


def test_template_documents_every_key_with_a_comment(tmp_path: Path) -> None:
    text = render_default_config()
    config = dataclasses.asdict(load_text(tmp_path, ""))
    del config["path"], config["sources"]
    assert dotted_keys(tomllib.loads(text)) == dotted_keys(config), "template misses keys"
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"[a-z_]+ = ", line):
            assert lines[i - 1].startswith("#"), f"key line without a comment above: {line!r}"


def test_source_defaults_and_derived_name(tmp_path: Path) -> None:
    text = '[[sources.filesystem]]\npath = "app"\ninclude_logs = true\n'
    text += '[[sources.mongodb]]\nuri = "mongodb://localhost"\n'
    config = load_text(tmp_path, text)
    files, mongo = config.sources.filesystem[0], config.sources.mongodb[0]
    assert (files.path, files.name) == (tmp_path / "app", "app"), f"source: {files}"
    assert (files.include, files.exclude) == (DEFAULT_INCLUDE, DEFAULT_EXCLUDE)
    assert files.secrets == DEFAULT_SECRETS
    assert {".env", "*.pem", "*credentials*"} <= set(files.secrets), "the brief's secrets"
    assert files.effective_include == DEFAULT_INCLUDE + LOG_INCLUDE, "include_logs adds log globs"
    assert (mongo.databases, mongo.collections) == ((), DEFAULT_COLLECTIONS)


# --- TOML and JSON ------------------------------------------------------------------------------

FULL: dict[str, Any] = {
    "storage": {
        "repository": "/var/lib/hindsight",
        "compression": "none",
        "compression_level": 19,
        "durability": "interval",
        "fsync_interval_ms": 50,
        "segment_max_bytes": 2 * 1024 * 1024,
        "segment_max_age_s": 60,
        "encryption": {"enabled": True, "key_file": "keys/repo.key", "key_env": "K"},
        "local": {"max_size": "10GB"},
    },
    "backup": {
        "verify_after_backup": False,
        "schedule": {"full": "*/15 1-5 * jan MON-FRI", "scan": ""},
        "retention": {
            "point_in_time": "36h",
            "full": {"keep_last": 2, "keep_daily": 0, "keep_within": "90d"},
            "incremental": {"keep_hourly": 24},
        },
    },
    "recovery": {"conflict_resolution": "skip", "dry_run_by_default": True, "staging_dir": "st"},
    "monitoring": {
        "log_level": "debug",
        "status_interval_s": 5,
        "metrics_port": 9100,
        "alert_webhook": "https://hooks.example/x",
    },
    "sources": {
        "filesystem": [
            {"path": "/srv/bot", "name": "bot", "include": ["*.json"], "exclude": []},
            {"path": "../kb", "include_logs": True},
        ],
        "mongodb": [
            {"uri": "mongodb+srv://c.example", "databases": ["chat"], "collections": ["*"]},
        ],
    },
}

FULL_TOML = """
[storage]
repository = "/var/lib/hindsight"
compression = "none"
compression_level = 19
durability = "interval"
fsync_interval_ms = 50
segment_max_bytes = 2097152
segment_max_age_s = 60
[storage.encryption]
enabled = true
key_file = "keys/repo.key"
key_env = "K"
[storage.local]
max_size = "10GB"
[backup]
verify_after_backup = false
[backup.schedule]
full = "*/15 1-5 * jan MON-FRI"
scan = ""
[backup.retention]
point_in_time = "36h"
[backup.retention.full]
keep_last = 2
keep_daily = 0
keep_within = "90d"
[backup.retention.incremental]
keep_hourly = 24
[recovery]
conflict_resolution = "skip"
dry_run_by_default = true
staging_dir = "st"
[monitoring]
log_level = "debug"
status_interval_s = 5
metrics_port = 9100
alert_webhook = "https://hooks.example/x"
[[sources.filesystem]]
path = "/srv/bot"
name = "bot"
include = ["*.json"]
exclude = []
[[sources.filesystem]]
path = "../kb"
include_logs = true
[[sources.mongodb]]
uri = "mongodb+srv://c.example"
databases = ["chat"]
collections = ["*"]
"""


def test_toml_and_json_load_to_the_same_config(tmp_path: Path) -> None:
    from_toml = load_config(write(tmp_path, FULL_TOML), env={})
    from_json = load_config(write(tmp_path, json.dumps(FULL), "hindsight.json"), env={})
    assert from_json == dataclasses.replace(from_toml, path=from_json.path), "TOML != JSON"
    assert from_toml.sources.filesystem[1].path == tmp_path.parent / "kb", "../ resolved"
    assert from_toml.sources.filesystem[1].name == "kb", "name derived from the path"
    assert from_toml.storage.encryption.key_file == tmp_path / "keys" / "repo.key"
    assert from_toml.backup.retention.full.keep_weekly == 0, "unset keys keep their defaults"
    assert from_toml.backup.retention.incremental.keep_within == "7d", "defaults per type"
    assert from_toml.backup.schedule.prune == "0 5 * * *", "unset schedules keep theirs"


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("x.yaml", "", "unsupported extension '.yaml'"),
        ("x.toml", "[storage\n", "not valid TOML"),
        ("x.json", "{", "not valid JSON"),
        ("x.json", '{"storage": {}, "storage": {}}', "duplicate key 'storage'"),
        ("x.json", "[1, 2]", "top level must be an object"),
    ],
    ids=["extension", "toml-syntax", "json-syntax", "json-duplicate", "json-not-object"],
)
def test_unreadable_files_are_config_errors(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text, name), env={})
    assert fragment in str(info.value), f"message: {info.value}"
    assert name in str(info.value), "the message names the file"


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml", env={})


# --- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "suggestion"),
    [
        ("colour = 1", "colour", ""),
        ("[storage]\ncompresion = 'zstd'", "storage.compresion", "compression"),
        ("[storage.encryption]\nkeyfile = 'k'", "storage.encryption.keyfile", "key_file"),
        (
            "[backup.retention.full]\nkeep_lastt = 3",
            "backup.retention.full.keep_lastt",
            "keep_last",
        ),
        ("[sources]\nfiles = []", "sources.files", "filesystem"),
        (
            "[[sources.filesystem]]\npath = 'a'\nexclude_logs = true",
            "sources.filesystem[0].exclude_logs",
            "include_logs",
        ),
        (
            "[[sources.mongodb]]\nuri = 'mongodb://h'\ndatabase = []",
            "sources.mongodb[0].database",
            "databases",
        ),
    ],
    ids=["top", "storage", "encryption", "retention", "sources", "filesystem", "mongodb"],
)
def test_unknown_key_names_its_dotted_path(
    tmp_path: Path, text: str, key: str, suggestion: str
) -> None:
    message = error_for(tmp_path, text)
    assert f"unknown key {key}" in message, f"message: {message}"
    assert suggestion in message, f"no suggestion {suggestion!r} in: {message}"


# id -> (dotted key, TOML literal, words from "allowed"); the literal is also how it is shown.
BAD_SCALARS = {
    "level-range": ("storage.compression_level", "30", "1 to 22"),
    "level-string": ("storage.compression_level", '"3"', "integer"),
    "level-bool": ("storage.compression_level", "true", "integer"),
    "level-float": ("storage.compression_level", "3.0", "integer"),
    "compression-enum": ("storage.compression", '"gzip"', '"zstd", "none"'),
    "durability-enum": ("storage.durability", '"always"', '"interval"'),
    "fsync-range": ("storage.fsync_interval_ms", "0", "1 to 60000"),
    "segment-min": ("storage.segment_max_bytes", "1024", "1048576"),
    "repository-empty": ("storage.repository", '""', "non-empty path"),
    "enabled-string": ("storage.encryption.enabled", '"yes"', "true or false"),
    "key-env-name": ("storage.encryption.key_env", '"1KEY"', "variable name"),
    "cron-fields": ("backup.schedule.full", '"0 3 * *"', "5-field cron"),
    "cron-range": ("backup.schedule.prune", '"61 * * * *"', "5-field cron"),
    "keep-last-negative": ("backup.retention.full.keep_last", "-1", ">= 0"),
    "duration-unit": ("backup.retention.point_in_time", '"7 days"', '"30d"'),
    "duration-bare-number": ("backup.retention.incremental.keep_within", '"30"', '"2w"'),
    "quota-size": ("storage.local.max_size", '"ten gigs"', '"10GB"'),
    "conflict-enum": ("recovery.conflict_resolution", '"ask"', '"rename"'),
    "log-level-enum": ("monitoring.log_level", '"trace"', '"debug"'),
    "port-range": ("monitoring.metrics_port", "70000", "0 to 65535"),
    "webhook-scheme": ("monitoring.alert_webhook", '"hooks"', "https://"),
    "section-not-table": ("storage", '"fast"', "a table"),
    "array-not-tables": ("sources.mongodb", '"mongodb://h"', "array of tables"),
}


@pytest.mark.parametrize(("key", "literal", "allowed"), BAD_SCALARS.values(), ids=BAD_SCALARS)
def test_bad_value_names_key_value_and_allowed(
    tmp_path: Path, key: str, literal: str, allowed: str
) -> None:
    table, _, name = key.rpartition(".")
    message = error_for(
        tmp_path, f"[{table}]\n{name} = {literal}" if table else f"{key} = {literal}"
    )
    assert f"{key} = {literal}" in message, f"key and value not named in: {message}"
    assert allowed in message, f"allowed values ({allowed!r}) not in: {message}"


FS = "[[sources.filesystem]]\n"
# id -> (TOML text, dotted key, value as shown, words from "allowed")
BAD_SOURCES = {
    "include-empty": (FS + "path = 'a'\ninclude = []", "filesystem[0].include", "[]", "non-empty"),
    "exclude-empty-glob": (
        FS + "path = 'a'\nexclude = ['']",
        "filesystem[0].exclude",
        '[""]',
        "globs",
    ),
    "secrets-empty-glob": (
        FS + "path = 'a'\nsecrets = ['*.pem', '']",
        "filesystem[0].secrets",
        '["*.pem", ""]',
        "globs",
    ),
    "secrets-not-array": (
        FS + "path = 'a'\nsecrets = '.env'",
        "filesystem[0].secrets",
        '".env"',
        "array",
    ),
    "name-underivable": (FS + "path = '/'", "filesystem[0].name", '""', "last component"),
    "name-slash": (FS + "path = 'a'\nname = 'a/b'", "filesystem[0].name", '"a/b"', "without /"),
    "name-duplicate": (
        FS + "path = 'x/a'\n" + FS + "path = 'y/a'",
        "filesystem[1].name",
        '"a"',
        "no other",
    ),
    "collections-star-mixed": (
        "[[sources.mongodb]]\nuri = 'mongodb://h'\ncollections = ['*', 'users']",
        "mongodb[0].collections",
        '["*", "users"]',
        '["*"]',
    ),
}


@pytest.mark.parametrize(("text", "key", "shown", "allowed"), BAD_SOURCES.values(), ids=BAD_SOURCES)
def test_bad_source_value_names_key_value_and_allowed(
    tmp_path: Path, text: str, key: str, shown: str, allowed: str
) -> None:
    message = error_for(tmp_path, text)
    assert f"sources.{key} = {shown}" in message, f"key and value not named in: {message}"
    assert allowed in message, f"allowed values ({allowed!r}) not in: {message}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("[]", ()), ('["*.p12", "vault/**"]', ("*.p12", "vault/**"))],
    ids=["none", "custom"],
)
def test_secret_globs_are_configurable(
    tmp_path: Path, value: str, expected: tuple[str, ...]
) -> None:
    config = load_text(tmp_path, f"{FS}path = 'a'\nsecrets = {value}\n")
    assert config.sources.filesystem[0].secrets == expected


def test_template_documents_the_secret_globs() -> None:
    text = render_default_config()
    shown = json.dumps(list(DEFAULT_SECRETS))
    assert f"# secrets = {shown}" in text, "the commented source shows the default secrets"
    assert "always stored encrypted" in text


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[[sources.filesystem]]\nname = 'x'", "sources.filesystem[0].path"),
        ("[[sources.mongodb]]\ndatabases = []", "sources.mongodb[0].uri"),
    ],
    ids=["filesystem-path", "mongodb-uri"],
)
def test_required_key_is_named_when_missing(tmp_path: Path, text: str, key: str) -> None:
    message = error_for(tmp_path, text)
    assert f"{key} is required" in message, f"message: {message}"


# --- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        f"mongo://admin:{SECRET}@db:27017",
        f"mongodb//admin:{SECRET}@db",
        f"admin:{SECRET}@db",
        f"postgres://admin:{SECRET}@db@x/?a=b",
    ],
    ids=["wrong-scheme", "missing-colon", "no-scheme", "at-in-password"],
)
def test_bad_uri_error_masks_the_password(tmp_path: Path, uri: str) -> None:
    message = error_for(tmp_path, f'[[sources.mongodb]]\nuri = "{uri}"')
    assert SECRET not in message, f"password leaked: {message}"
    assert "admin:***@" in message, f"masked form missing: {message}"
    assert "sources.mongodb[0].uri" in message and "mongodb+srv://" in message, message


def test_password_from_env_is_masked_and_kept_out_of_repr(tmp_path: Path) -> None:
    env = {"PW": SECRET}
    message = error_for(tmp_path, '[[sources.mongodb]]\nuri = "mongo://admin:${PW}@db"', env)
    assert SECRET not in message and "admin:***@db" in message, f"leaked: {message}"
    config = load_text(tmp_path, '[[sources.mongodb]]\nuri = "mongodb://admin:${PW}@db"', env)
    assert config.sources.mongodb[0].uri == f"mongodb://admin:{SECRET}@db", "expanded"
    assert config.sources.mongodb[0].redacted_uri == "mongodb://admin:***@db"
    assert SECRET not in repr(config), "repr must not show the password"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"connect to mongodb://u:{SECRET}@h:27017/db", "connect to mongodb://u:***@h:27017/db"),
        ("mongodb://h:27017/db", "mongodb://h:27017/db"),
        (f"https://bot:{SECRET}@hooks.example/x", "https://bot:***@hooks.example/x"),
    ],
    ids=["mongodb", "no-password", "https"],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected, f"redact({text!r})"


# --- environment references ---------------------------------------------------------------------


def test_env_references_expand_in_strings_and_arrays(tmp_path: Path) -> None:
    text = """
[storage]
repository = "${DATA}/repo"
[[sources.filesystem]]
path = "/srv/${APP}"
include = ["${APP}.json", "price$$list", "cost$5"]
"""
    config = load_text(tmp_path, text, env={"DATA": "/data", "APP": "bot"})
    assert config.storage.repository == Path("/data/repo"), f"{config.storage.repository}"
    source = config.sources.filesystem[0]
    assert (source.path, source.name) == (Path("/srv/bot"), "bot"), f"{source}"
    assert source.include == ("bot.json", "price$list", "cost$5"), "$$ is a literal $"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ('[backup.schedule]\nfull = "${CRON}"', ("backup.schedule.full", "CRON", "not set")),
        ('[[sources.filesystem]]\npath = "a"\ninclude = ["${X}"]', ("include", "X", "not set")),
        ('[storage]\nrepository = "${bad-name}"', ("storage.repository", "malformed", "$$")),
    ],
    ids=["missing", "missing-in-array", "malformed"],
)
def test_env_reference_errors(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    message = error_for(tmp_path, text)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


def test_env_defaults_to_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HINDSIGHT_TEST_REPO", "/from/env")
    config = load_config(write(tmp_path, '[storage]\nrepository = "${HINDSIGHT_TEST_REPO}"'))
    assert config.storage.repository == Path("/from/env"), "os.environ used by default"


# --- paths and discovery ------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_dir, elsewhere = tmp_path / "etc", tmp_path / "cwd"
    config_dir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    text = """
[storage]
repository = "data/../repo"
[storage.encryption]
key_file = "k.key"
[recovery]
staging_dir = "/abs/staging"
[[sources.filesystem]]
path = "../app"
"""
    write(config_dir, text)
    config = load_config(Path("..") / "etc" / CONFIG_FILENAME, env={})
    assert config.path == config_dir / CONFIG_FILENAME, "path made absolute"
    assert config.storage.repository == config_dir / "repo", f"{config.storage.repository}"
    assert config.storage.encryption.key_file == config_dir / "k.key"
    assert config.recovery.staging_dir == Path("/abs/staging"), "absolute paths kept"
    assert config.sources.filesystem[0].path == tmp_path / "app"


@pytest.mark.parametrize(
    ("explicit", "from_env", "expected"),
    [
        ("explicit.toml", "env.toml", "explicit.toml"),
        (None, "env.toml", "env.toml"),
        (None, None, CONFIG_FILENAME),
        (None, "", CONFIG_FILENAME),
    ],
    ids=["explicit-wins", "env-over-cwd", "cwd", "empty-env-ignored"],
)
def test_discovery_order(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    from_env: str | None,
    expected: str,
) -> None:
    for name in ("explicit.toml", "env.toml", CONFIG_FILENAME):
        write(tmp_path, "", name)
    monkeypatch.chdir(tmp_path)
    env = {} if from_env is None else {CONFIG_ENV: from_env}
    assert find_config_path(explicit, env) == tmp_path / expected, f"{explicit=} {env=}"


@pytest.mark.parametrize(
    ("explicit", "env", "fragments"),
    [
        ("nope.toml", {CONFIG_ENV: "env.toml"}, ("nope.toml", "--config", "does not exist")),
        (None, {CONFIG_ENV: "gone.toml"}, ("gone.toml", CONFIG_ENV, "does not exist")),
        (".", {}, ("--config", "is not a file")),
        (None, {}, ("hindsight init", "--config", CONFIG_FILENAME)),
    ],
    ids=["explicit-missing", "env-missing", "explicit-directory", "none"],
)
def test_discovery_errors(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    explicit: str | None,
    env: dict[str, str],
    fragments: tuple[str, ...],
) -> None:
    write(tmp_path, "", "env.toml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        find_config_path(explicit, env)
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in: {info.value}"


# --- rendering ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repository", "protect", "mongodb", "encrypt", "key_file"),
    [
        ("./backups", [], [], False, "./hindsight.key"),
        ("/mnt/backups/", ["/srv/chatbot", "kb"], [], False, "./hindsight.key"),
        ("repo", [], ["mongodb://localhost:27017", "mongodb+srv://c.example/"], True, "k.key"),
        ('we"ird\\ $$ ${x\t', ['sp ace/q"uote'], ['mongodb://u:p"w@h'], True, "/keys/$HOME"),
    ],
    ids=["defaults", "protect", "mongodb-encrypt", "escaping"],
)
def test_render_round_trips(
    tmp_path: Path,
    repository: str,
    protect: list[str],
    mongodb: list[str],
    encrypt: bool,
    key_file: str,
) -> None:
    text = render_default_config(repository, protect, mongodb, encrypt, key_file)
    config = load_text(tmp_path, text)
    repo = Path(os.path.normpath(tmp_path / repository))
    assert config.storage.repository == repo, f"repository: {config.storage.repository}"
    assert config.recovery.staging_dir == repo / "staging", "staging under the repository"
    assert config.storage.encryption.enabled is encrypt
    assert config.storage.encryption.key_file == Path(os.path.normpath(tmp_path / key_file))
    paths = [source.path for source in config.sources.filesystem]
    assert paths == [Path(os.path.normpath(tmp_path / p)) for p in protect], f"{paths}"
    assert [source.uri for source in config.sources.mongodb] == mongodb


def test_render_keeps_env_references(tmp_path: Path) -> None:
    text = render_default_config(mongodb=["mongodb://backup:${MONGO_PW}@db"])
    assert "${MONGO_PW}" in text and SECRET not in text, "the password stays in the env"
    config = load_text(tmp_path, text, env={"MONGO_PW": SECRET})
    assert config.sources.mongodb[0].uri == f"mongodb://backup:{SECRET}@db"


_TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    repository=_TEXT,
    protect=st.lists(_TEXT, max_size=3),
    mongodb=st.lists(_TEXT.map(lambda rest: "mongodb://" + rest), max_size=3),
    encrypt=st.booleans(),
    key_file=_TEXT,
)
def test_render_round_trips_any_text(
    tmp_path_factory: pytest.TempPathFactory,
    repository: str,
    protect: list[str],
    mongodb: list[str],
    encrypt: bool,
    key_file: str,
) -> None:
    values = [repository, key_file, *protect, *mongodb]
    assume(not any(re.search(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", v) for v in values))
    assume(not any(v.startswith("~") for v in (repository, key_file, *protect)))
    # Each protected path ends in a distinct component, so the derived names are unique.
    roots = [f"{p}/p{i}" for i, p in enumerate(protect)]
    directory = tmp_path_factory.mktemp("render")
    config = load_text(
        directory, render_default_config(repository, roots, mongodb, encrypt, key_file)
    )
    expected = [os.path.normpath(directory / p) for p in (repository, key_file, *roots)]
    actual = [config.storage.repository, config.storage.encryption.key_file]
    actual += [source.path for source in config.sources.filesystem]
    assert [str(path) for path in actual] == expected, "paths differ after a round trip"
    assert [source.uri for source in config.sources.mongodb] == mongodb, "URIs differ"
    assert config.storage.encryption.enabled is encrypt
