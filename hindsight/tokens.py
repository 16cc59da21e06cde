"""Bearer tokens for the HTTP API: roles, what each role may do, and the token file.

A token is ``hs_<id>_<secret>``: ``id`` (8 hex digits) names its record so a request is
checked against one hash, not all of them; ``secret`` is 256 random bits. The plaintext is
shown once, at creation; ``<repository>/api/tokens.json`` keeps only its SHA-256.

Roles nest: a viewer reads; an operator also backs up and runs dry-run restores; an admin also
restores for real, deletes, prunes and manages tokens.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from journal.errors import ConfigError, CorruptionError, NotFound, RepositoryError
from journal.fsutil import atomic_write, make_dirs

__all__ = ["Permission", "Role", "Token", "TokenStore", "role_allows"]

TOKENS_FILE = "api/tokens.json"
LOCK_FILE = "api/LOCK"
FORMAT_VERSION = 1
MAX_NAME_LENGTH = 64

_TOKEN_RE = re.compile(r"hs_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")  # token_urlsafe(32): 43 chars
_ID_RE = re.compile(r"[0-9a-f]{8}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_FIELDS = ("id", "name", "role", "created_at", "expires_at", "revoked_at", "sha256")


class Role(StrEnum):
    """What a token may do, from least to most."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    """One kind of API action; each endpoint requires exactly one."""

    READ = "read"  # status, lists, scans, previews, history
    BACKUP = "backup"  # create and verify backups
    DRY_RUN = "dry_run"  # restores with dry_run
    RESTORE = "restore"  # real restores
    DELETE = "delete"  # delete backups, prune
    TOKENS = "tokens"  # manage tokens


_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.BACKUP, Permission.DRY_RUN}),
    Role.ADMIN: frozenset(Permission),
}


def role_allows(role: Role, permission: Permission) -> bool:
    """Whether a token with ``role`` may perform an action needing ``permission``."""
    return permission in _GRANTS[role]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _format_time(moment: datetime) -> str:
    """ISO 8601 UTC to the second with a Z: '2026-11-25T10:00:00Z'."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime:
    """The instant a stored time names; ValueError unless it is ISO 8601 with a zone."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone")
    return moment


@dataclass(frozen=True)
class Token:
    """A token's record as shown to people and the API; never holds the secret or its hash."""

    id: str
    name: str
    role: Role
    created_at: str
    expires_at: str | None
    revoked_at: str | None

    def active(self, now: datetime | None = None) -> bool:
        """Neither revoked nor expired at ``now`` (default: the current time)."""
        return self.status(now) == "active"

    def status(self, now: datetime | None = None) -> str:
        """'active', 'revoked' or 'expired' at ``now`` (default: the current time)."""
        if self.revoked_at is not None:
            return "revoked"
        moment = _utc_now() if now is None else now
        if self.expires_at is not None and moment >= _parse_time(self.expires_at):
            return "expired"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        """The record plus its current status, for ``--json`` and the API."""
        return {**asdict(self), "role": str(self.role), "status": self.status()}


@dataclass(frozen=True)
class _Entry:
    """A stored record: the token and the SHA-256 (hex) of its plaintext."""

    token: Token
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.token), "role": str(self.token.role), "sha256": self.sha256}


# Tokens carry 256 random bits, so a fast unsalted hash is safe: no guess can reach a
# preimage, unlike a password, which would need a slow, salted KDF. A leaked file grants nothing.
def _digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


class TokenStore:
    """The API tokens of one repository, in ``<repo_root>/api/tokens.json``.

    Writes are atomic and serialised across processes by ``api/LOCK``. Reads are cached and
    re-read only when the file changes, since ``authenticate`` runs on every API request.
    ``clock`` gives the current time (tests inject one).
    """

    def __init__(self, repo_root: Path, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self.path = repo_root / TOKENS_FILE
        self._lock_path = repo_root / LOCK_FILE
        self._clock = clock
        self._cache: tuple[tuple[int, int, int], dict[str, _Entry]] | None = None

    def create(
        self, role: Role, name: str | None = None, expires_in: timedelta | None = None
    ) -> tuple[Token, str]:
        """A new token: its record and its plaintext, which is shown once and never stored."""
        role = _role(role)
        now = self._clock()
        expires = None if expires_in is None else _format_time(now + expires_in)
        with self._locked():
            entries = self._read(fresh=True)
            token_id = _new_id(entries)
            token = Token(
                id=token_id,
                name=_check_name(name, entries.values(), now) or f"token-{token_id}",
                role=role,
                created_at=_format_time(now),
                expires_at=expires,
                revoked_at=None,
            )
            plaintext = f"hs_{token_id}_{secrets.token_urlsafe(32)}"
            self._write({**entries, token_id: _Entry(token, _digest(plaintext))})
        return token, plaintext

    def list(self) -> list[Token]:
        """Every token, revoked and expired ones included, oldest first."""
        # The file keeps creation order; a stable sort keeps it among same-second tokens.
        return sorted((e.token for e in self._read().values()), key=lambda t: t.created_at)

    def revoke(self, id_or_name: str) -> Token:
        """Revoke the token with this id or name; revoking twice changes nothing."""
        with self._locked():
            entries = self._read(fresh=True)
            token = _find(entries, id_or_name, self._clock())
            if token.revoked_at is not None:
                return token
            revoked = replace(token, revoked_at=_format_time(self._clock()))
            self._write({**entries, token.id: _Entry(revoked, entries[token.id].sha256)})
        return revoked

    def authenticate(self, presented: str) -> Token | None:
        """The token ``presented`` is, if active; None if malformed, unknown, revoked or
        expired (the caller answers all of these alike, so nothing is learned from which)."""
        match = _TOKEN_RE.fullmatch(presented)
        if match is None:
            return None
        entry = self._read().get(match[1])
        if entry is None or not hmac.compare_digest(entry.sha256, _digest(presented)):
            return None
        return entry.token if entry.token.active(self._clock()) else None

    def _read(self, *, fresh: bool = False) -> dict[str, _Entry]:
        """The records by id; from the cache unless the file changed or ``fresh``."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        # The inode changes on every atomic replace, so same-size writes within one mtime
        # tick are still seen.
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if not fresh and self._cache is not None and self._cache[0] == signature:
            return self._cache[1]
        entries = _decode(self.path)
        self._cache = (signature, entries)
        return entries

    def _write(self, entries: dict[str, _Entry]) -> None:
        doc = {"version": FORMAT_VERSION, "tokens": [e.to_json() for e in entries.values()]}
        atomic_write(self.path, json.dumps(doc, indent=1).encode(), mode=0o600)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold ``api/LOCK``: one read-modify-write at a time, across threads and processes."""
        make_dirs(self.path.parent)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock


def _role(role: Role | str) -> Role:
    try:
        return Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise ConfigError(f"unknown role {role!r}; use one of {roles}") from None


def _new_id(entries: dict[str, _Entry]) -> str:
    while (token_id := secrets.token_hex(4)) in entries:
        pass
    return token_id


def _check_name(name: str | None, entries: Iterable[_Entry], now: datetime) -> str | None:
    """``name`` if it is usable and no active token has it; None stays None (the default)."""
    if name is None:
        return None
    if not name or name != name.strip() or not name.isprintable() or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(
            f"invalid token name {name!r}: use 1 to {MAX_NAME_LENGTH} printable characters "
            "without leading or trailing spaces"
        )
    if _ID_RE.fullmatch(name):
        raise ConfigError(f"invalid token name {name!r}: it looks like a token id; pick another")
    clash = next((e.token for e in entries if e.token.name == name and e.token.active(now)), None)
    if clash is not None:
        raise ConfigError(
            f"an active token is already named {name!r} (id {clash.id}); pick another name "
            "or revoke that token first"
        )
    return name


def _find(entries: dict[str, _Entry], id_or_name: str, now: datetime) -> Token:
    """The token with this id, else the one with this name (preferring active ones)."""
    if id_or_name in entries:
        return entries[id_or_name].token
    named = [e.token for e in entries.values() if e.token.name == id_or_name]
    if len(named) > 1:
        named = [t for t in named if t.active(now)] or named
    if not named:
        raise NotFound(f"no token has the id or name {id_or_name!r}; see `hindsight token list`")
    if len(named) > 1:
        ids = ", ".join(t.id for t in named)
        raise ConfigError(f"the name {id_or_name!r} matches tokens {ids}; revoke one by its id")
    return named[0]


def _decode(path: Path) -> dict[str, _Entry]:
    """The records in the token file; CorruptionError if it is not what this module writes."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RepositoryError(f"cannot read the API token file {path}: {exc.strerror}") from exc
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
            raise ValueError('expected an object with a "tokens" list')
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"format version {doc.get('version')!r}, expected {FORMAT_VERSION}")
        entries = {e.token.id: e for e in map(_entry, doc["tokens"])}
        if len(entries) != len(doc["tokens"]):
            raise ValueError("two records have the same id")
    except (ValueError, TypeError, KeyError) as exc:
        raise CorruptionError(
            f"the API token file {path} is unreadable ({exc}); to recover, move it away and "
            "create new tokens with `hindsight token create` (every old token stops working)"
        ) from exc
    return entries


def _entry(record: Any) -> _Entry:
    """One record of the file, checked field by field."""
    if not isinstance(record, dict) or not set(_FIELDS) <= set(record):
        raise ValueError(f"a token record needs the fields {', '.join(_FIELDS)}")
    for key in _FIELDS:
        optional = key in ("expires_at", "revoked_at")
        if not isinstance(record[key], str) and not (optional and record[key] is None):
            raise ValueError(f"token field {key!r} must be a string")
    if not _ID_RE.fullmatch(record["id"]):
        raise ValueError(f"token id {record['id']!r} is not 8 hex digits")
    if not _SHA256_RE.fullmatch(record["sha256"]):
        raise ValueError(f"token {record['id']} has no SHA-256 hex digest")
    for key in ("created_at", "expires_at", "revoked_at"):
        if record[key] is not None:
            _parse_time(record[key])  # ValueError or TypeError if it is not a time
    fields = {k: record[k] for k in _FIELDS if k != "sha256"}
    return _Entry(Token(**{**fields, "role": Role(record["role"])}), record["sha256"])
