"""Private machinery of ``hindsight.config``: field specs, the generic reader, secret masking.

It exists so that ``config.py`` can hold only what a reader of the configuration needs to see
(the typed dataclasses and how a file is found and loaded) while this module holds the generic
parts that make that possible:

- field specs: each dataclass field's metadata says how its key is read (type, default, check,
  words for what is allowed), built with ``int_spec``, ``enum_spec``, ``path_spec`` and friends;
- the generic reader: ``make`` builds any of those dataclasses from a table by its specs,
  expanding ``${NAME}`` references and rejecting unknown keys, with errors from ``Context``;
- showing values: ``redact`` and ``mask_uri`` keep passwords out of errors and output.

Nothing here imports ``hindsight.config``; it imports this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from compaction.retention import parse_duration
from compaction.schedule import check_cron
from compaction.storage import parse_size
from journal.errors import ConfigError

__all__ = [
    "MONGO_URI",
    "REQUIRED",
    "SOURCE_NAME",
    "WEBHOOK",
    "Context",
    "Field",
    "Nested",
    "bool_spec",
    "enum_spec",
    "env_name_spec",
    "int_spec",
    "is_collections",
    "cron_spec",
    "duration_spec",
    "size_spec",
    "make",
    "mask_uri",
    "names_spec",
    "path_spec",
    "redact",
    "spec",
]

_META: Final = "hindsight.config"  # the dataclass-field metadata key holding a spec


# --- field specs ------------------------------------------------------------------------------

REQUIRED: Final = object()
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_Kind = Literal["int", "bool", "str", "path", "list"]
_KINDS: Final[dict[_Kind, Callable[[Any], bool]]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "path": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list) and all(isinstance(item, str) for item in v),
}


@dataclass(frozen=True)
class Field:
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
class Nested:
    """A subtable (``[storage.encryption]``) or, with ``array``, an array of tables."""

    cls: type
    array: bool = False


_Metadata = dict[str, Field | Nested]


def spec(field_spec: Field | Nested) -> _Metadata:
    """Dataclass-field metadata carrying a spec; the reader, not the dataclass, has defaults."""
    return {_META: field_spec}


def int_spec(default: int, low: int, high: int | None = None, note: str = "") -> _Metadata:
    """An integer key bounded below and optionally above."""
    allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
    return spec(
        Field("int", default, allowed + note, lambda v: low <= v <= (v if high is None else high))
    )


def enum_spec(default: str, choices: tuple[str, ...]) -> _Metadata:
    """A string key limited to a fixed set of choices."""
    allowed = "one of " + ", ".join(f'"{choice}"' for choice in choices)
    return spec(Field("str", default, allowed, lambda v: v in choices))


def bool_spec(default: bool) -> _Metadata:
    """A boolean key."""
    return spec(Field("bool", default, "true or false"))


def path_spec(default: Any) -> _Metadata:
    """A non-empty path, resolved against the config file's directory."""
    return spec(Field("path", default, "a non-empty path (relative to the config file)", bool))


def env_name_spec(default: str) -> _Metadata:
    """The name (not the value) of an environment variable, so secrets stay out of the file."""
    allowed = "an environment variable name (letters, digits, _; not starting with a digit)"
    return spec(Field("str", default, allowed, lambda v: _ENV_NAME.fullmatch(v) is not None))


def names_spec(
    default: tuple[str, ...], allowed: str, check: Callable[[Any], bool] = bool
) -> _Metadata:
    """An array of non-empty strings; ``check`` sees the whole list (default: non-empty)."""
    return spec(Field("list", default, allowed, lambda v: all(v) and check(v)))


def cron_spec(default: str) -> _Metadata:
    """A 5-field cron expression in local time, or "" for never."""
    allowed = 'a 5-field cron expression like "0 3 * * *" (minute hour day month weekday), or ""'
    return spec(Field("str", default, allowed + " for never", lambda v: not v or not check_cron(v)))


def duration_spec(default: str) -> _Metadata:
    """A duration like "30d", "12h", "2w", "1d12h", or "0"."""
    allowed = 'a duration like "90m", "12h", "30d", "2w" or "1d12h" ("0" = none)'
    return spec(Field("str", default, allowed, _is_duration))


def size_spec(default: str) -> _Metadata:
    """A size like "10GB" or "512MiB", or "" for no limit."""
    allowed = 'a size like "10GB" or "512MiB" (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), or ""'
    return spec(Field("str", default, allowed + " for no limit", _is_size))


def _is_duration(value: str) -> bool:
    try:
        parse_duration(value)
    except ConfigError:
        return False
    return True


def _is_size(value: str) -> bool:
    if not value:
        return True
    try:
        parse_size(value)
    except ValueError:
        return False
    return True


def _is_source_name(value: str) -> bool:
    """A name usable as one path component in listings and restore targets."""
    return value not in ("", ".", "..") and not re.search(r"[/\\\x00-\x1f\x7f]", value)


def is_collections(value: list[str]) -> bool:
    """Non-empty, and ``"*"`` only on its own, so "all" is never mixed with a selection."""
    return bool(value) and ("*" not in value or value == ["*"])


WEBHOOK: Final = Field(
    "str",
    "",
    '"" (off) or an http:// or https:// URL',
    lambda v: v == "" or re.fullmatch(r"https?://\S+", v) is not None,
    uri=True,
)
SOURCE_NAME: Final = Field(
    "str",
    None,
    "a name without / or \\ (default: the last component of path)",
    _is_source_name,
    derive=lambda values: values["path"].name,
)
MONGO_URI: Final = Field(
    "str",
    REQUIRED,
    "a URI starting with mongodb:// or mongodb+srv://",
    lambda v: v.startswith(("mongodb://", "mongodb+srv://")),
    uri=True,
)


# --- the generic reader -----------------------------------------------------------------------

_T = TypeVar("_T")
_REFERENCE: Final = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|(\{))")


@dataclass(frozen=True)
class Context:
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


def make(cls: type[_T], table: Mapping[str, Any], ctx: Context, where: str, **extra: Any) -> _T:
    """Build ``cls`` from ``table`` by the specs in its fields' metadata; ``extra`` is not read."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    specs = {f.name: f.metadata[_META] for f in fields if _META in f.metadata}
    _reject_unknown(table, list(specs), ctx, where)
    values = {
        name: _read(table, name, spec, ctx, f"{where}.{name}" if where else name)
        for name, spec in specs.items()
    }
    for name, spec in specs.items():  # derived defaults see the other values, then get checked
        if isinstance(spec, Field) and spec.derive and values[name] is None:
            values[name] = spec.derive(values)
            if not spec.check(values[name]):
                raise ctx.invalid(f"{where}.{name}", values[name], spec.allowed)
    return cls(**values, **extra)


def _reject_unknown(table: Mapping[str, Any], known: list[str], ctx: Context, where: str) -> None:
    """Fail on the first key not in ``known``, suggesting the closest known one."""
    for name in table:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            key = f"{where}.{name}" if where else name
            raise ctx.error(f"unknown key {key}{hint}; allowed here: {', '.join(known)}")


def _read(table: Mapping[str, Any], name: str, spec: Any, ctx: Context, key: str) -> Any:
    """One key: a value, a subtable, or an array of tables."""
    if isinstance(spec, Field):
        return _value(table, name, spec, ctx, key)
    value = table.get(name, [] if spec.array else {})
    if not spec.array:
        if not isinstance(value, dict):
            raise ctx.invalid(key, value, f"a table ([{key}])", uri=True, wrong_type=True)
        return make(spec.cls, value, ctx, key)
    if not (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
        raise ctx.invalid(key, value, f"an array of tables ([[{key}]])", uri=True, wrong_type=True)
    return tuple(make(spec.cls, item, ctx, f"{key}[{i}]") for i, item in enumerate(value))


def _value(table: Mapping[str, Any], name: str, spec: Field, ctx: Context, key: str) -> Any:
    """One key's checked value, or its default when absent; paths resolved, arrays as tuples."""
    if name in table:
        value = ctx.expand(table[name], key)
        if not _KINDS[spec.kind](value):
            raise ctx.invalid(key, value, spec.allowed, uri=spec.uri, wrong_type=True)
        if not spec.check(value):
            raise ctx.invalid(key, value, spec.allowed, uri=spec.uri)
    elif spec.default is REQUIRED:
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


def mask_uri(uri: str) -> str:
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
        value = mask_uri(value)
    text = redact(json.dumps(value, ensure_ascii=False, default=str))
    return text if len(text) <= 120 else text[:117] + "..."


def _type_name(value: Any) -> str:
    """The config-file word for a Python value's type, for 'wrong type' messages."""
    names = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array"}
    return "table" if isinstance(value, dict) else names.get(type(value), type(value).__name__)
