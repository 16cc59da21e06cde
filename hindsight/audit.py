"""The audit trail: who did what, when, and how it ended, in a chain that shows tampering.

Files under ``<repository>/audit/``:

    audit.jsonl  one entry per line (JSON), only ever appended to
    head.json    ``seq`` and ``hash`` of the newest entry, replaced atomically after each append,
                 so removing the newest entries shows (the chain alone cannot tell)
    LOCK         held (flock) by each append: the CLI and the daemon append from two processes

Chain: an entry's ``hash`` covers its canonical JSON without ``hash`` (``json.dumps`` with
sorted keys and ``(",", ":")`` separators, ASCII), and that includes ``prev``, the hash of the
entry before it (64 zeros for the first). ``alg`` names the function: ``sha256``, or
``hmac-sha256`` under the repository's audit subkey when the log is opened with one, so that
someone without the key cannot rewrite the chain consistently. A keyed head.json carries a
MAC of its seq and hash too. ``verify`` checks what its key allows: with the key every hash,
and it reports ``sha256`` entries (whoever wrote them without the key could have rewritten
them); without it ``sha256`` hashes and, for keyed entries, only the links, sequence, times
and head.

Crash safety: an append writes its whole line in one ``O_APPEND`` write, fsyncs, then
replaces head.json. A crash leaves either an unfinished last line (no newline), which
``verify`` and ``entries`` skip and the next append cuts away, or a complete entry that
head.json does not name yet, which ``verify`` accepts. An append continues the chain from
head.json when it names the newest entry or one past it, so a removal stays visible as a
gap in the sequence after later appends.

Times are ISO 8601 UTC with microseconds, never before the previous entry's (a clock that
steps back does not break the order). Secrets never reach the file: detail values under
secret-looking names (password, token, secret, key, ...) become ``***`` and URI passwords
are masked everywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hindsight.config import redact
from hindsight.config_fields import mask_uri
from journal.errors import ConfigError, CorruptionError
from journal.fsutil import atomic_write, fsync_dir, make_dirs, write_all
from journal.repository import Repository

__all__ = [
    "AUDIT_DIR",
    "GENESIS",
    "HMAC_SHA256",
    "OUTCOMES",
    "SHA256",
    "AuditEntry",
    "AuditLog",
    "AuditProblem",
    "audit_log",
]

OUTCOMES = ("ok", "failed", "denied")
"""How an operation ended: done, failed, or refused (no permission)."""
AUDIT_DIR = "audit"
LOG_FILE = "audit.jsonl"
HEAD_FILE = "head.json"
LOCK_FILE = "LOCK"
AUDIT_SUBKEY = "audit"
"""The label of the key-ring subkey that keys the chain."""
GENESIS = "0" * 64
"""The ``prev`` of the first entry."""
SHA256 = "sha256"
HMAC_SHA256 = "hmac-sha256"
MASK = "***"

_FIELDS: dict[str, type] = {
    "seq": int,
    "time": str,
    "actor": str,
    "action": str,
    "target": str,
    "outcome": str,
    "details": dict,
    "alg": str,
    "prev": str,
    "hash": str,
}
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SECRET_NAME = re.compile(
    r"passw|passphrase|secret|credential|(^|_)(pwd|token|key|apikey|authorization|cookie)$"
)
_URI_NAME = re.compile(r"(^|_)(uri|url|dsn)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BLOCK = 1 << 16


@dataclass(frozen=True)
class AuditEntry:
    """One audited operation as stored; ``hash`` chains it to the entry before (``prev``)."""

    seq: int
    time: str
    actor: str
    action: str
    target: str
    outcome: str
    details: dict[str, Any]
    prev: str
    hash: str
    alg: str = SHA256

    def as_dict(self) -> dict[str, Any]:
        """The entry as its JSON object, for ``--json`` and the API."""
        return asdict(self)


@dataclass(frozen=True)
class AuditProblem:
    """Why the trail cannot be trusted at one place: ``line`` in audit.jsonl (1-based; the
    line after the last for removed entries; 0 for head.json itself) and the entry's seq."""

    line: int
    seq: int | None
    reason: str


@dataclass(frozen=True)
class _Head:
    seq: int
    hash: str
    mac: str | None


class AuditLog:
    """The audit trail of one repository: append, read and verify ``<repo_root>/audit/``."""

    def __init__(self, repo_root: Path, key: bytes | None = None) -> None:
        self.dir = repo_root / AUDIT_DIR
        self.log_path = self.dir / LOG_FILE
        self.head_path = self.dir / HEAD_FILE
        self._key = key
        self._alg = HMAC_SHA256 if key is not None else SHA256
        self._thread_lock = threading.Lock()

    def append(
        self,
        *,
        actor: str,
        action: str,
        outcome: str,
        target: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Record one operation durably and return it as stored (secrets masked).

        Raises ConfigError for an outcome not in OUTCOMES.
        """
        if outcome not in OUTCOMES:
            raise ConfigError(f"audit outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        clean = _masked(dict(details or {}))
        with self._locked(exclusive=True):
            created = not self.log_path.exists()
            fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                last = _repaired_tail(fd)
                seq, prev, floor_us = _continuation(last, _read_head(self.head_path)[0])
                doc: dict[str, Any] = {
                    "seq": seq,
                    "time": _format_us(max(_now_us(), floor_us)),
                    "actor": redact(actor),
                    "action": action,
                    "target": redact(target),
                    "outcome": outcome,
                    "details": clean,
                    "alg": self._alg,
                    "prev": prev,
                }
                doc["hash"] = _digest(doc, self._alg, self._key)
                write_all(fd, (json.dumps(doc, separators=(",", ":")) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.dir)
            atomic_write(self.head_path, _head_bytes(seq, doc["hash"], self._key), mode=0o600)
        return AuditEntry(**doc)

    def entries(self, since_us: int | None = None) -> Iterator[AuditEntry]:
        """Entries oldest first, those at or after ``since_us`` (microseconds since the epoch)
        when given. Hashes are not checked (``verify`` does); an unfinished last line is
        skipped; any other unreadable line raises CorruptionError naming it."""
        for number, offset, raw, complete in _lines(self.log_path):
            if not complete:
                return
            try:
                entry = _parse(raw)[1]
            except ValueError as exc:
                raise CorruptionError(
                    f"audit log line {number} is not a valid entry: {exc}; "
                    "run `hindsight audit verify`",
                    path=f"{AUDIT_DIR}/{LOG_FILE}",
                    offset=offset,
                ) from exc
            if since_us is None or _time_us(entry.time) >= since_us:
                yield entry

    def verify(self) -> list[AuditProblem]:
        """Every sign of an edit, removal, insertion or reordering; [] when intact.

        Reads head.json and the log's length under the lock, then checks that much of the
        log without it: the log only grows, so appends meanwhile do not disturb the check.
        """
        with self._locked(exclusive=False):
            head, damage = _read_head(self.head_path)
            size = self.log_path.stat().st_size if self.log_path.exists() else 0
        checker = _Checker(self._key)
        for number, _, raw, complete in _lines(self.log_path, size):
            checker.feed(number, raw, complete)
        return checker.finish(head, damage)

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """This instance's thread lock, then ``audit/LOCK``: exclusive to append, shared to
        read; a log that was never appended to has no LOCK and nothing to wait for."""
        with self._thread_lock:
            if exclusive:
                make_dirs(self.dir)
            try:
                flags = os.O_RDWR | os.O_CREAT if exclusive else os.O_RDONLY
                fd: int | None = os.open(self.dir / LOCK_FILE, flags, 0o600)
            except FileNotFoundError:
                fd = None
            try:
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                yield
            finally:
                if fd is not None:
                    os.close(fd)  # releases the lock


def audit_log(repo: Repository) -> AuditLog:
    """The repository's audit log, keyed by its audit subkey when the key ring is unlocked."""
    return AuditLog(repo.root, repo.ring.subkey(AUDIT_SUBKEY) if repo.ring else None)


# ---------------------------------------------------------------------- appending
def _repaired_tail(fd: int) -> bytes | None:
    """The last complete line (None in an empty log), after cutting away an unfinished one."""
    size = os.fstat(fd).st_size
    buf, pos = b"", size
    while pos > 0 and buf.count(b"\n") < 2:
        start = max(0, pos - _BLOCK)
        buf, pos = os.pread(fd, pos - start, start) + buf, start
    cut = buf.rfind(b"\n")
    if pos + cut + 1 < size:
        os.ftruncate(fd, pos + cut + 1)  # an append that crashed mid-write
    if cut < 0:
        return None
    return buf[buf.rfind(b"\n", 0, cut) + 1 : cut]


def _continuation(last: bytes | None, head: _Head | None) -> tuple[int, str, int]:
    """Seq and prev of the next entry, and the earliest time it may have.

    From head.json when it names the newest entry or a later one, so removed entries stay
    visible as a gap; else from the log's last entry (head.json lags it after a crash).
    """
    if last is None:
        seq, prev, floor_us = 0, GENESIS, 0
    else:
        try:
            entry = _parse(last)[1]
        except ValueError as exc:
            if head is None:
                raise CorruptionError(
                    f"the last audit entry is unreadable ({exc}) and head.json is missing; "
                    "run `hindsight audit verify`",
                    path=f"{AUDIT_DIR}/{LOG_FILE}",
                ) from exc
            return head.seq + 1, head.hash, 0
        seq, prev, floor_us = entry.seq, entry.hash, _time_us(entry.time)
    if head is not None and head.seq >= seq:
        return head.seq + 1, head.hash, floor_us
    return seq + 1, prev, floor_us


def _masked(value: Any, name: str = "") -> Any:
    """``value`` as JSON data with secrets masked: anything under a secret-looking name,
    and the password of every URI."""
    word = name.lower().replace("-", "_")
    if _SECRET_NAME.search(word):
        return MASK
    if isinstance(value, Mapping):
        return {str(k): _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return redact(mask_uri(text) if _URI_NAME.search(word) else text)


def _head_bytes(seq: int, hash_: str, key: bytes | None) -> bytes:
    doc: dict[str, Any] = {"seq": seq, "hash": hash_}
    if key is not None:
        doc["mac"] = _head_mac(seq, hash_, key)
    return (json.dumps(doc) + "\n").encode()


# ---------------------------------------------------------------------- reading
def _lines(path: Path, size: int | None = None) -> Iterator[tuple[int, int, bytes, bool]]:
    """(line number, offset, bytes without the newline, whether it was complete) for each
    line of the first ``size`` bytes (all when None); nothing when the file is missing."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; a generator cannot use `with` here
    except FileNotFoundError:
        return
    with f:
        offset = 0
        for number, raw in enumerate(f, start=1):
            if size is not None and offset + len(raw) > size:
                raw = raw[: max(0, size - offset)]
            if not raw:
                return
            yield number, offset, raw.removesuffix(b"\n"), raw.endswith(b"\n")
            offset += len(raw)


def _parse(raw: bytes) -> tuple[dict[str, Any], AuditEntry]:
    """The JSON object of one line and its entry; ValueError saying what is wrong."""
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    for name, kind in _FIELDS.items():
        value = doc.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"field {name!r} is missing or not a {kind.__name__}")
    if not (_HEX64.fullmatch(doc["hash"]) and _HEX64.fullmatch(doc["prev"])):
        raise ValueError("hash or prev is not 64 hex digits")
    _time_us(doc["time"])
    return doc, AuditEntry(**{name: doc[name] for name in _FIELDS})


def _read_head(path: Path) -> tuple[_Head | None, str | None]:
    """head.json, or None and why not (None when it is just missing)."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None, None
    except ValueError as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    seq, hash_, mac = doc.get("seq"), doc.get("hash"), doc.get("mac")
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(hash_, str):
        return None, "seq or hash is missing"
    return _Head(seq, hash_, mac if isinstance(mac, str) else None), None


# ---------------------------------------------------------------------- hashing and time
def _digest(doc: Mapping[str, Any], alg: str, key: bytes | None) -> str | None:
    """The hash ``doc`` should carry under ``alg``; None when it cannot be computed here."""
    body = {k: v for k, v in doc.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    if alg == SHA256:
        return hashlib.sha256(canonical).hexdigest()
    if alg == HMAC_SHA256 and key is not None:
        return hmac.new(key, canonical, hashlib.sha256).hexdigest()
    return None


def _head_mac(seq: int, hash_: str, key: bytes) -> str:
    message = f"hindsight audit head v1 {seq} {hash_}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _now_us() -> int:
    return (datetime.now(UTC) - _EPOCH) // timedelta(microseconds=1)


def _format_us(us: int) -> str:
    moment = _EPOCH + timedelta(microseconds=us)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _time_us(text: str) -> int:
    """Microseconds since the epoch of an entry's time; ValueError unless ISO 8601 with zone."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return (moment - _EPOCH) // timedelta(microseconds=1)


# ---------------------------------------------------------------------- verifying
class _Checker:
    """Checks the entries one by one in file order, then head.json against the newest."""

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self.problems: list[AuditProblem] = []
        self.last: AuditEntry | None = None  # the entry with the highest seq so far
        self.before_last: AuditEntry | None = None
        self.last_line = 0
        self.unfinished: int | None = None  # line number of an unfinished last line
        self.after_damage = False  # the line before was unreadable: a gap is expected

    def feed(self, number: int, raw: bytes, complete: bool) -> None:
        """Check one line."""
        if not complete:
            self.unfinished = number
            return
        try:
            doc, entry = _parse(raw)
        except ValueError as exc:
            self._problem(number, None, f"line {number} is not a valid entry: {exc}")
            self.after_damage = True
            return
        self._check_hash(number, doc, entry)
        self._check_place(number, entry)
        self.after_damage = False
        if self.last is None or entry.seq > self.last.seq:
            self.before_last, self.last, self.last_line = self.last, entry, number

    def finish(self, head: _Head | None, damage: str | None) -> list[AuditProblem]:
        """Compare head.json with the newest entry; every problem found."""
        last_seq = self.last.seq if self.last else 0
        if damage is not None:
            self._problem(0, None, f"head.json is damaged: {damage}")
        elif head is None:
            if last_seq > 1:
                self._problem(
                    self.last_line,
                    last_seq,
                    "head.json is missing, so removed entries at the end would not show",
                )
        else:
            self._check_head(head, last_seq)
        if self.unfinished is not None and head is not None and head.seq > last_seq:
            self._problem(self.unfinished, None, f"line {self.unfinished} is cut short")
        return self.problems

    def _check_hash(self, number: int, doc: dict[str, Any], entry: AuditEntry) -> None:
        seq = entry.seq
        if entry.alg not in (SHA256, HMAC_SHA256):
            return self._problem(number, seq, f"entry {seq} names an unknown hash {entry.alg!r}")
        expected = _digest(doc, entry.alg, self.key)
        if expected is not None and not hmac.compare_digest(expected, entry.hash):
            self._problem(number, seq, f"entry {seq} was changed (its hash does not match)")
        elif entry.alg == SHA256 and self.key is not None:
            self._problem(number, seq, f"entry {seq} is not keyed, so it could have been forged")

    def _check_place(self, number: int, entry: AuditEntry) -> None:
        """Sequence, link to the entry before, and time order."""
        seq, before = entry.seq, self.last
        before_seq = before.seq if before else 0
        if seq <= before_seq:
            self._problem(number, seq, f"entry {seq} is out of order (after entry {before_seq})")
        elif self.after_damage:
            pass  # the unreadable line explains a gap or a broken link
        elif seq > before_seq + 1:
            self._problem(number, seq, _missing(before_seq + 1, seq - 1))
        elif entry.prev != (before.hash if before else GENESIS):
            after = f"follow entry {before_seq}" if before else "start the chain"
            self._problem(number, seq, f"entry {seq} does not {after} (prev does not match)")
        if before and _time_us(entry.time) < _time_us(before.time):
            self._problem(number, seq, f"entry {seq} is dated before entry {before_seq}")

    def _check_head(self, head: _Head, last_seq: int) -> None:
        if head.seq > last_seq:
            n = head.seq - last_seq
            what = "entry was" if n == 1 else f"{n} entries were"
            reason = f"the last {what} removed (head.json names seq {head.seq})"
            return self._problem(self.last_line + 1, head.seq, reason)
        # one entry past head.json: a crash came between an append and its head.json
        named = self.last if head.seq == last_seq else self.before_last
        if named is None or named.seq != head.seq:
            reason = f"head.json names entry {head.seq}, but the log ends at entry {last_seq}"
            self._problem(self.last_line, last_seq, reason)
        elif named.hash != head.hash:
            reason = f"entry {named.seq} does not match head.json (it was changed or replaced)"
            self._problem(self.last_line, named.seq, reason)
        elif self.key is not None and (head.mac is not None or named.alg == HMAC_SHA256):
            mac = _head_mac(head.seq, head.hash, self.key)
            if not hmac.compare_digest(head.mac or "", mac):
                self._problem(0, head.seq, "head.json was rewritten (its MAC does not match)")

    def _problem(self, line: int, seq: int | None, reason: str) -> None:
        self.problems.append(AuditProblem(line, seq, reason))


def _missing(first: int, last: int) -> str:
    return f"entry {first} is missing" if first == last else f"entries {first}-{last} are missing"
