"""Repositories with a history for query tests, and an independent oracle of event rows.

``history_repo`` builds, in the conftest ``secret``'s mode (encrypted, or "secrets" opened
without its key): three sealed segments with history files, the middle one's history then
removed (so the tail has a hole to fill), a fourth sealed segment never exported, and an
active segment. It yields the repository opened read-only, as ``hindsight sql`` opens it,
with every event the journal holds (seq assigned).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import bson
import pytest

from compaction.history import HistoryExport
from journal.events import ChangeEvent, FileImage, Op, Source
from journal.keys import MasterSecret
from journal.meta import META_DEPLOYMENT, META_OLD_PATH
from journal.repository import Repository

T0 = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at(us: int) -> datetime:
    """Microseconds since the epoch as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=us)


def mixed_events(n: int, rng: random.Random, t0: int = T0) -> list[ChangeEvent]:
    """``n`` events of every kind: documents (some in transactions), files, moves, markers."""
    out = []
    for i in range(n):
        ts = t0 + i * 1_000_000
        kind = rng.randrange(6)
        if kind <= 2:
            op = rng.choice([Op.INSERT, Op.UPDATE, Op.REPLACE, Op.DELETE])
            after = None if op == Op.DELETE else bson.encode({"_id": i, "n": rng.random()})
            out.append(
                ChangeEvent(Source.MONGODB, rng.choice(["chat.quotes", "chat.users"]),
                            f'{{"$numberInt": "{rng.randrange(5)}"}}', op, ts, after,
                            txn="t1" if kind == 2 else "", meta={META_DEPLOYMENT: "mongodb"})
            )  # fmt: skip
        elif kind <= 4:
            op = rng.choice([Op.CREATE, Op.MODIFY, Op.MOVE, Op.DELETE])
            image = FileImage(f"{i:064x}", 10 + i, hashlib.sha256(b"%d" % i).hexdigest(), 0o644, i)
            meta = {META_OLD_PATH: "old.txt"} if op == Op.MOVE else None
            out.append(ChangeEvent(Source.FILESYSTEM, "app", f"kb/{rng.randrange(4)}.json", op,
                                   ts, None if op == Op.DELETE else image, meta=meta))  # fmt: skip
        else:
            out.append(ChangeEvent(Source.SYSTEM, "app", "scan", Op.MARKER, ts))
    return out


def oracle_row(event: ChangeEvent, segment: str) -> dict[str, Any]:
    """The ``events`` row of ``event``, computed here from the event alone."""
    meta = event.meta or {}
    after = event.after
    size = hash_ = blob = None
    if isinstance(after, FileImage):
        size, hash_, blob = after.size, after.sha256, after.blob
    elif after is not None:
        size, hash_ = len(after), hashlib.sha256(after).hexdigest()
    return {
        "seq": event.seq,
        "source_ts": at(event.source_ts),
        "capture_ts": at(event.capture_ts),
        "source": event.source.value,
        "deployment": meta.get(META_DEPLOYMENT),
        "namespace": event.namespace,
        "key": event.key,
        "op": event.op.value,
        "size": size,
        "hash": hash_,
        "blob": blob,
        "txn": event.txn or None,
        "old_path": meta.get(META_OLD_PATH),
        "segment": segment,
    }


class Built(NamedTuple):
    """A repository opened read-only, and every event its journal holds."""

    repo: Repository
    events: list[ChangeEvent]
    segments: list[str]  # segment file names, oldest first

    def segment_of(self, seq: int) -> str:
        """The name of the segment holding ``seq``."""
        return max((s for s in self.segments if int(s[:20]) <= seq), key=lambda s: int(s[:20]))

    def oracle(self) -> list[dict[str, Any]]:
        """Every event's row, in seq order."""
        return [oracle_row(e, self.segment_of(e.seq)) for e in self.events]


def build_history(root: Path, secret: MasterSecret | None) -> None:
    """Write the layout the module docstring describes into the repository at ``root``."""
    rng = random.Random(5)
    with Repository.open(root, secret, writable=True) as repo:
        for part in range(3):
            repo.log.append(mixed_events(12, rng, T0 + part * 3_600_000_000))
            repo.log.seal()
        history = HistoryExport.of(repo)
        written = history.export().files
        assert len(written) == 3, f"three history files expected, got {written}"
        history.remove([written[1].segment])
        repo.log.append(mixed_events(10, rng, T0 + 3 * 3_600_000_000))
        repo.log.seal()
        repo.log.append(mixed_events(7, rng, T0 + 4 * 3_600_000_000))


@pytest.fixture
def history_repo(repo_path: Path, secret: MasterSecret | None) -> Iterator[Built]:
    """See the module docstring."""
    build_history(repo_path, secret)
    with Repository.open(repo_path, secret) as repo:
        events = list(repo.log.read())
        names = sorted(Path(rel).name for rel, _ in repo.log.segment_files())
        yield Built(repo, events, names)
