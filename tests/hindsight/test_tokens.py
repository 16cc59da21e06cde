"""API bearer tokens: the role matrix, ``TokenStore`` and ``hindsight token ...``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hindsight.cli.main import main
from hindsight.config import load_config
from hindsight.tokens import Permission, Role, TokenStore, role_allows
from journal.errors import ConfigError, CorruptionError, NotFound

P = Permission
MATRIX = {
    Role.VIEWER: {P.READ},
    Role.OPERATOR: {P.READ, P.BACKUP, P.DRY_RUN},
    Role.ADMIN: {P.READ, P.BACKUP, P.DRY_RUN, P.RESTORE, P.DELETE, P.TOKENS},
}
START = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def tokens_file(root: Path) -> Path:
    return root / "api" / "tokens.json"


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path)


# -- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "permission"),
    [(r, p) for r in Role for p in Permission],
    ids=[f"{r}-{p}" for r in Role for p in Permission],
)
def test_role_matrix(role: Role, permission: Permission) -> None:
    expected = permission in MATRIX[role]
    assert role_allows(role, permission) is expected, f"{role} may {permission}: {expected}"


# -- TokenStore ----------------------------------------------------------------------------


def test_a_created_token_authenticates_and_hides_its_secret(store: TokenStore) -> None:
    token, plaintext = store.create(Role.OPERATOR, "ci")
    assert re.fullmatch(rf"hs_{token.id}_[A-Za-z0-9_-]{{43}}", plaintext), plaintext
    assert re.fullmatch(r"[0-9a-f]{8}", token.id), token.id
    assert (token.name, token.role, token.revoked_at, token.expires_at) == (
        "ci",
        Role.OPERATOR,
        None,
        None,
    )
    assert store.authenticate(plaintext) == token
    shown = json.dumps(token.as_dict())
    assert plaintext not in shown and hashlib.sha256(plaintext.encode()).hexdigest() not in shown
    assert token.as_dict()["status"] == "active" and token.as_dict()["role"] == "operator"


def test_the_file_holds_the_hash_never_the_plaintext(tmp_path: Path, store: TokenStore) -> None:
    token, plaintext = store.create(Role.ADMIN)
    text = tokens_file(tmp_path).read_text()
    secret = plaintext[len(f"hs_{token.id}_") :]
    assert plaintext not in text and secret not in text, "plaintext stored"
    assert hashlib.sha256(plaintext.encode()).hexdigest() in text, "hash missing"
    assert tokens_file(tmp_path).stat().st_mode & 0o777 == 0o600


def test_default_name_and_list_order(store: TokenStore) -> None:
    clock = Clock()
    store = TokenStore(store.path.parent.parent, clock=clock)
    first, _ = store.create(Role.VIEWER)
    clock.now += timedelta(seconds=5)
    second, _ = store.create(Role.ADMIN, "later")
    assert first.name == f"token-{first.id}"
    assert store.list() == [first, second]
    assert first.created_at == "2026-11-25T10:00:00Z", first.created_at


@pytest.mark.parametrize(
    "presented",
    ["", "Bearer x", "hs_", "hs_0000000_" + "a" * 43, "HS_00000000_" + "a" * 43, "hs_00000000_x"],
    ids=["empty", "not-a-token", "prefix-only", "short-id", "upper-prefix", "short-secret"],
)
def test_malformed_tokens_are_refused(store: TokenStore, presented: str) -> None:
    store.create(Role.ADMIN)
    assert store.authenticate(presented) is None


def test_unknown_id_and_wrong_secret_are_refused(store: TokenStore) -> None:
    token, plaintext = store.create(Role.ADMIN)
    flipped = plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")
    assert store.authenticate(flipped) is None, "a wrong secret for a known id"
    other_id = "0" * 8 if token.id != "0" * 8 else "1" * 8
    assert store.authenticate(plaintext.replace(token.id, other_id, 1)) is None, "unknown id"
    assert store.authenticate(plaintext) == token


@pytest.mark.parametrize("by", ["id", "name"])
def test_a_revoked_token_stops_working(store: TokenStore, by: str) -> None:
    token, plaintext = store.create(Role.VIEWER, "dash")
    kept, kept_plaintext = store.create(Role.VIEWER, "other")
    revoked = store.revoke(token.id if by == "id" else "dash")
    assert revoked.id == token.id and revoked.revoked_at is not None
    assert store.authenticate(plaintext) is None
    assert store.authenticate(kept_plaintext) == kept, "only the named token is revoked"
    assert [t.status() for t in store.list()] == ["revoked", "active"]
    assert store.revoke(token.id) == revoked, "revoking again changes nothing"


def test_revoking_an_unknown_token_is_not_found(store: TokenStore) -> None:
    store.create(Role.VIEWER, "dash")
    with pytest.raises(NotFound, match="nope"):
        store.revoke("nope")


def test_an_expired_token_stops_working(store: TokenStore) -> None:
    token, plaintext = store.create(Role.ADMIN, expires_in=timedelta(seconds=-1))
    assert store.authenticate(plaintext) is None
    assert not token.active() and token.status() == "expired"


def test_expiry_follows_the_clock(tmp_path: Path) -> None:
    clock = Clock()
    store = TokenStore(tmp_path, clock=clock)
    token, plaintext = store.create(Role.OPERATOR, expires_in=timedelta(hours=1))
    assert token.expires_at == "2026-11-25T11:00:00Z"
    clock.now += timedelta(minutes=59)
    assert store.authenticate(plaintext) == token
    clock.now += timedelta(minutes=1)
    assert store.authenticate(plaintext) is None, "expired at expires_at"
    assert token.active(START) and not token.active(clock.now)


def test_names_are_unique_among_active_tokens(store: TokenStore) -> None:
    first, _ = store.create(Role.VIEWER, "ci")
    with pytest.raises(ConfigError, match=rf"'ci' \(id {first.id}\)"):
        store.create(Role.ADMIN, "ci")
    store.revoke("ci")
    second, plaintext = store.create(Role.ADMIN, "ci")
    assert store.authenticate(plaintext) == second, "a revoked token's name is free again"
    assert store.revoke("ci").id == second.id, "a name picks the active token of that name"


def test_a_name_shared_by_inactive_tokens_is_ambiguous(store: TokenStore) -> None:
    expired = timedelta(seconds=-1)
    a, _ = store.create(Role.VIEWER, "old", expires_in=expired)
    b, _ = store.create(Role.VIEWER, "old", expires_in=expired)
    with pytest.raises(ConfigError, match=f"{a.id}, {b.id}|{b.id}, {a.id}"):
        store.revoke("old")


@pytest.mark.parametrize(
    "name",
    ["", " padded", "x" * 65, "tab\there", "0123abcd"],
    ids=["empty", "padded", "too-long", "control-char", "looks-like-an-id"],
)
def test_bad_names_are_refused(store: TokenStore, name: str) -> None:
    with pytest.raises(ConfigError, match="invalid token name"):
        store.create(Role.VIEWER, name)
    assert store.list() == []


def test_an_unknown_role_lists_the_roles(store: TokenStore) -> None:
    with pytest.raises(ConfigError, match="viewer, operator, admin"):
        store.create("superuser")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 1}',
        '{"version": 2, "tokens": []}',
        '{"version": 1, "tokens": [{"id": "abcd1234"}]}',
    ],
    ids=["not-json", "list", "no-tokens", "future-version", "short-record"],
)
def test_a_corrupt_file_says_how_to_recover(tmp_path: Path, content: str) -> None:
    store = TokenStore(tmp_path)
    store.create(Role.VIEWER)
    tokens_file(tmp_path).write_text(content)
    with pytest.raises(CorruptionError, match="move it away and create new tokens") as info:
        store.list()
    assert str(tokens_file(tmp_path)) in str(info.value)


def test_a_record_with_a_bad_field_is_corrupt(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.create(Role.VIEWER)
    doc = json.loads(tokens_file(tmp_path).read_text())
    doc["tokens"][0]["role"] = "root"
    tokens_file(tmp_path).write_text(json.dumps(doc))
    with pytest.raises(CorruptionError, match="root"):
        store.list()


def test_changes_by_another_store_are_seen(tmp_path: Path) -> None:
    """Another process (here another store) creates and revokes; the cache follows."""
    api, cli = TokenStore(tmp_path), TokenStore(tmp_path)
    assert api.list() == []
    token, plaintext = cli.create(Role.VIEWER)
    assert api.authenticate(plaintext) == token
    cli.revoke(token.id)
    assert api.authenticate(plaintext) is None


def test_reads_are_cached_until_the_file_changes(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    token, plaintext = store.create(Role.VIEWER)
    path = tokens_file(tmp_path)
    assert store.authenticate(plaintext) == token
    before = path.stat()
    with open(path, "r+b") as f:  # same inode, same size, mtime put back: looks unchanged
        f.write(b"#" * before.st_size)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert store.authenticate(plaintext) == token, "the unchanged file was read again"
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    with pytest.raises(CorruptionError):
        store.authenticate(plaintext)


def test_concurrent_creates_are_all_kept(tmp_path: Path) -> None:
    def create_some() -> None:
        store = TokenStore(tmp_path)
        for _ in range(5):
            store.create(Role.VIEWER)

    threads = [threading.Thread(target=create_some) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(TokenStore(tmp_path).list()) == 30


# -- hindsight token ... -------------------------------------------------------------------


@pytest.fixture
def repo_root(workdir: Path) -> Path:
    """An initialised repository protecting a small app; its directory."""
    app = workdir / "app"
    app.mkdir()
    (app / "config.py").write_text("x = 1\n")
    assert main(["init", "--protect", str(app)]) == 0
    return load_config(workdir / "hindsight.toml").storage.repository


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_cli_create_prints_the_token_once(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    code, out, err = run(capsys, "token", "create", "--role", "operator", "--name", "ci")
    assert code == 0, err
    plaintext = re.search(r"hs_[0-9a-f]{8}_\S+", out)
    assert plaintext, out
    assert "cannot be shown again" in out and "never expires" in out, out
    token = TokenStore(repo_root).authenticate(plaintext[0])
    assert token is not None and (token.name, token.role) == ("ci", Role.OPERATOR)


def test_cli_create_json(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    doc = run_json(capsys, "token", "create", "--role", "viewer", "--expires", "2w")
    assert set(doc) == {"token", "id", "name", "role", "created_at", "expires_at", "revoked_at",
                        "status"}, doc  # fmt: skip
    token = TokenStore(repo_root).authenticate(doc["token"])
    assert token is not None and token.as_dict() == {k: v for k, v in doc.items() if k != "token"}
    created = datetime.fromisoformat(doc["created_at"])
    assert datetime.fromisoformat(doc["expires_at"]) - created == timedelta(weeks=2), doc


def test_cli_list_shows_statuses_but_no_hashes(
    repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = TokenStore(repo_root)
    active, _ = store.create(Role.ADMIN, "ops")
    revoked, _ = store.create(Role.VIEWER, "gone")
    store.revoke("gone")
    expired, _ = store.create(Role.OPERATOR, "old", expires_in=timedelta(seconds=-1))
    capsys.readouterr()
    code, out, err = run(capsys, "token", "list")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert rows[active.id][1:3] == ["ops", "admin"] and rows[active.id][-1] == "active", out
    assert rows[revoked.id][-1] == "revoked" and rows[expired.id][-1] == "expired", out
    hashes = [t["sha256"] for t in json.loads(tokens_file(repo_root).read_text())["tokens"]]
    listed = run_json(capsys, "token", "list")
    assert [(t["id"], t["status"]) for t in listed] == [
        (active.id, "active"),
        (revoked.id, "revoked"),
        (expired.id, "expired"),
    ]
    assert not any(h in out or h in json.dumps(listed) for h in hashes), "a hash was printed"


def test_cli_list_when_there_are_none(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run(capsys, "token", "list")[1].startswith("No API tokens yet")
    assert run_json(capsys, "token", "list") == []


def test_cli_revoke(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token, plaintext = TokenStore(repo_root).create(Role.VIEWER, "dash")
    capsys.readouterr()
    doc = run_json(capsys, "token", "revoke", "dash")
    assert doc["id"] == token.id and doc["status"] == "revoked", doc
    assert TokenStore(repo_root).authenticate(plaintext) is None
    code, _, err = run(capsys, "token", "revoke", "dash-typo")
    assert code == 3 and err.count("\n") == 1 and "dash-typo" in err, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--expires", "5x"], "--expires: invalid duration '5x'"),
        (["--expires", "0"], "--expires must be longer than 0"),
        (["--name", "ops"], "already named 'ops'"),
    ],
    ids=["bad-duration", "zero-duration", "name-clash"],
)
def test_cli_create_errors_are_one_line(
    repo_root: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    TokenStore(repo_root).create(Role.VIEWER, "ops")
    capsys.readouterr()
    code, out, err = run(capsys, "token", "create", "--role", "admin", *argv)
    assert code == 2 and out == "" and err.count("\n") == 1, (code, out, err)
    assert message in err, err
    assert len(TokenStore(repo_root).list()) == 1, "nothing was created"


def test_cli_refuses_an_unknown_role(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["token", "create", "--role", "root"])
    assert info.value.code == 2
    assert "choose from 'viewer', 'operator', 'admin'" in capsys.readouterr().err


def test_cli_needs_a_repository(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo_root.rename(repo_root.with_name("moved"))
    capsys.readouterr()
    code, _, err = run(capsys, "token", "create", "--role", "viewer")
    assert code == 3 and "no Hindsight repository" in err, err
    assert not repo_root.exists(), "no directory was created where the repository was"
