"""hindsight.wiring: which key opens the repository, and capture's roots from the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hindsight.config import DEFAULT_SECRETS, EncryptionConfig, load_config
from hindsight.wiring import file_roots, resolve_secret
from journal.errors import ConfigError
from journal.keys import create_key_file


def encryption(tmp_path: Path, enabled: bool) -> EncryptionConfig:
    path = tmp_path / "hindsight.toml"
    path.write_text(f"[storage.encryption]\nenabled = {'true' if enabled else 'false'}\n")
    return load_config(path, env={}).storage.encryption


@pytest.mark.parametrize("enabled", [True, False], ids=["encrypt-all", "secrets-only"])
def test_configured_key_file_is_used_when_it_exists(tmp_path: Path, enabled: bool) -> None:
    enc = encryption(tmp_path, enabled)
    created = create_key_file(tmp_path / "hindsight.key")
    secret = resolve_secret(enc, env={})
    assert secret is not None and secret.key == created.key, "the key file opens secrets too"


def test_missing_key_file(tmp_path: Path) -> None:
    assert resolve_secret(encryption(tmp_path, False), env={}) is None, (
        "without --encrypt a missing key file only locks the secret files"
    )
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_secret(encryption(tmp_path, True), env={})


def test_environment_comes_before_the_key_file(tmp_path: Path) -> None:
    create_key_file(tmp_path / "hindsight.key")
    enc = encryption(tmp_path, False)
    secret = resolve_secret(enc, env={"HINDSIGHT_PASSPHRASE": "pw"})
    assert secret is not None and secret.passphrase == "pw"


def test_file_roots_carry_the_secret_globs(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    path = tmp_path / "hindsight.toml"
    path.write_text(
        '[[sources.filesystem]]\npath = "app"\n'
        '[[sources.filesystem]]\npath = "kb"\nsecrets = ["vault/**"]\n'
    )
    app, kb = file_roots(load_config(path, env={}))
    assert app.secrets.patterns == DEFAULT_SECRETS
    assert app.is_secret(".env") and app.is_secret("deploy/tls.pem") and app.wants(".env")
    assert app.is_secret("aws_credentials.json") and not app.is_secret("config.py")
    assert kb.is_secret("vault/a.txt") and not kb.is_secret(".env")
