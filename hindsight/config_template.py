"""The commented default ``hindsight.toml`` that ``hindsight init`` writes.

The text lives in ``hindsight/default_config.toml`` (package data, so its comments are edited as
a file, not as Python strings); this module fills in the values ``init`` was given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Final

__all__ = ["render_default_config"]

_TEMPLATE: Final = "default_config.toml"

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
    api: bool = False,
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
        ("api", "enabled", "true" if api else "false"),
    ):
        text = _set_key(text, section, key, value)
    tables = [f"\n[[sources.filesystem]]\npath = {_toml_string(p)}\n" for p in protect]
    tables += [
        f"\n[[sources.mongodb]]\nuri = {_toml_string(u)}\n"
        + (f'name = "mongodb-{i + 1}"\n' if i else "")  # names tell deployments apart
        for i, u in enumerate(mongodb)
    ]
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
