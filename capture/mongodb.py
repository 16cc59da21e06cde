"""MongoDB capture: an initial sync, then change streams into the journal, exactly once.

The protocol, for one deployment:

1. *Initial sync* (first start, or after history was lost): open the change stream(s) to take
   a resume position *before* copying, append a ``sync-start`` marker holding it, copy every
   protected collection (its options and indexes as a ``collection`` marker, then each
   document as an INSERT with its exact BSON), append ``sync-end``. Streaming then resumes
   from the position taken before the copy, so no change is lost in the hand-off; a change
   seen both in the copy and in the stream replays harmlessly (a document image is the whole
   document). A copy cut off before ``sync-end`` is redone from scratch.
2. *Streaming*: every change event (with ``fullDocument`` and the update delta) becomes a
   journal event carrying its resume token, in the same append as its neighbours (see
   ``mongo_batcher``: transactions are never split). A restart resumes after the last
   appended token, so the journal neither loses nor repeats an event.
3. *Reconciling* the collection list, at start and periodically: a protected collection the
   journal believes exists but the server has not is recorded as dropped (or as renamed,
   when a new collection has its UUID); changed options or indexes are recorded again.
4. *History lost* (the resume token fell off the oplog, error 286): a GAP event, an alert in
   the status, and a fresh initial sync.

Network errors, elections and server restarts are retried with exponential backoff and
jitter; the status says MongoDB is down meanwhile, and the rest of the daemon carries on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.change_stream import ChangeStream
from pymongo.errors import OperationFailure, PyMongoError

from capture import mongo_compat
from capture.mongo_batcher import Batcher
from capture.mongo_events import META_OP, document_id_key, normalize
from capture.mongo_state import (
    ALL_SCOPE,
    COLLECTION_MARKER,
    META_DEPLOYMENT,
    META_STREAM,
    SYNC_END,
    SYNC_START,
    DeploymentState,
)
from capture.mongo_target import DEFAULT_COLLECTIONS, MongoTarget
from journal.errors import CorruptionError, SourceUnavailable
from journal.events import ChangeEvent, Op, Source, now_us
from journal.protocols import EventSink

__all__ = [
    "DEFAULT_COLLECTIONS",
    "HISTORY_LOST_CODES",
    "MongoCapture",
    "MongoStatus",
    "MongoTarget",
    "SyncSummary",
]

log = logging.getLogger("hindsight.capture.mongodb")

HISTORY_LOST_CODES = frozenset({286, 136})  # ChangeStreamHistoryLost, CappedPositionLost
COPY_BATCH = 1000
DRAIN_LIMIT = 10_000  # events taken from one stream before timers (reconcile) get a turn
Redact = Callable[[str], str]


@dataclass
class MongoStatus:
    """What the daemon's status shows for one deployment."""

    state: str = "starting"  # starting | syncing | streaming | down
    since: float = field(default_factory=time.time)
    last_error: str = ""
    events: int = 0
    documents_copied: int = 0
    last_change_us: int = 0
    lag_s: float = 0.0  # from the newest change (its server time) to its capture
    alerts: list[str] = field(default_factory=list)

    def enter(self, state: str, error: str = "") -> None:
        """Move to ``state``; ``since`` changes only when the state does."""
        if state != self.state:
            self.state, self.since = state, time.time()
        self.last_error = error


@dataclass
class SyncSummary:
    """What a one-shot sync did."""

    initial_sync: bool = False
    documents_copied: int = 0
    events: int = 0
    collections: int = 0
    dropped: int = 0


class _HistoryLost(Exception):
    """The stream cannot resume: its position is no longer in the oplog."""


class _Stop(Exception):
    """Asked to stop in the middle of a copy."""


class MongoCapture:
    """Captures one deployment into ``sink``, resuming from ``state`` (rebuilt by replay).

    ``state`` is kept up to date with every append. Blocking: run it in a thread.
    """

    def __init__(
        self,
        target: MongoTarget,
        client: MongoClient[RawBSONDocument],
        sink: EventSink,
        state: DeploymentState,
        *,
        full_document: str = "updateLookup",
        redact: Redact = str,
        max_await_ms: int = 200,
        reconcile_s: float = 30.0,
        checkpoint_s: float = 10.0,
        batcher_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.target, self.client, self.sink, self.state = target, client, sink, state
        self.full_document, self.redact = full_document, redact
        self.max_await_ms, self.reconcile_s, self.checkpoint_s = (
            max_await_ms,
            reconcile_s,
            checkpoint_s,
        )
        self.status = MongoStatus()
        self.batcher = Batcher(sink, self._appended, **(batcher_options or {}))
        self._per_collection: bool | None = None
        self._summary = SyncSummary()

    # --- entry points ---------------------------------------------------------------------

    def sync(self) -> SyncSummary:
        """Catch up once (initial sync if needed, then the stream until it runs dry)."""
        self._summary = SyncSummary()
        try:
            self._session(threading.Event(), until_dry=True)
        except _HistoryLost:
            self._session(threading.Event(), until_dry=True)
        except PyMongoError as exc:
            raise SourceUnavailable(
                f"MongoDB {self.target.name} cannot be reached: {self.redact(str(exc))}; "
                "check that the server runs and the URI in the config is right"
            ) from exc
        return self._summary

    def run(self, stop: threading.Event) -> None:
        """Capture until ``stop`` is set, retrying every failure with backoff and jitter."""
        failures = 0
        while not stop.is_set():
            try:
                self._session(stop, until_dry=False)
                return
            except _HistoryLost:
                continue  # the gap is recorded; the next session syncs afresh
            except _Stop:
                return
            except (PyMongoError, SourceUnavailable) as exc:
                self.batcher.discard()
                failures = 1 if self.status.state == "streaming" else failures + 1
                delay = backoff_delay(failures)
                self.status.enter("down", self.redact(f"{type(exc).__name__}: {exc}"))
                log.warning(
                    "MongoDB %s unavailable (%s); retrying in %.1f s",
                    self.target.name,
                    self.status.last_error,
                    delay,
                )
                stop.wait(delay)

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()

    def __enter__(self) -> MongoCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one connected session ------------------------------------------------------------

    def _session(self, stop: threading.Event, *, until_dry: bool) -> None:
        if self._per_collection is None:
            self._per_collection = mongo_compat.is_nx_27017(self.client.admin)
        if not self.state.synced:
            self._initial_sync(stop)
        self._reconcile()
        streams: dict[str, ChangeStream[RawBSONDocument]] = {}
        try:
            self._open_streams(streams)
            self.status.enter("streaming")
            self._pump(streams, stop, until_dry)
        except OperationFailure as exc:
            if exc.code in HISTORY_LOST_CODES:
                self._history_lost(exc)
            raise
        finally:
            for stream in streams.values():
                stream.close()

    def _open_streams(self, streams: dict[str, ChangeStream[RawBSONDocument]]) -> None:
        """Open the streams not open yet: one for the deployment, or one per collection.

        A collection with no recorded position (new, or its copy was cut off) is copied
        first, from a position taken before the copy.
        """
        if not self._per_collection:
            if ALL_SCOPE not in streams:
                streams[ALL_SCOPE] = self._resume(ALL_SCOPE)
            return
        for scope in [s for s in streams if s not in self.state.collections]:
            streams.pop(scope).close()
        for namespace in sorted(set(self.state.collections) - set(streams)):
            if namespace not in self.state.positions:
                position = self._start_position(namespace)
                info = self._collection_infos().get(namespace)
                self._copy(namespace, info, threading.Event())
                self._append([self._system(Op.CHECKPOINT, namespace, position=position)])
            streams[namespace] = self._resume(namespace)

    def _resume(self, scope: str) -> ChangeStream[RawBSONDocument]:
        token = self.state.positions.get(scope)
        return self._open_stream(scope, bson.decode(token) if token else None)

    def _open_stream(
        self, scope: str, resume_after: Mapping[str, Any] | None, *, start_after: bool = False
    ) -> ChangeStream[RawBSONDocument]:
        """The driver boundary: open one change stream (tests inject server errors here)."""
        options: dict[str, Any] = {
            "full_document": self.full_document,
            "max_await_time_ms": self.max_await_ms,
            "show_expanded_events": True,
            ("start_after" if start_after else "resume_after"): resume_after,
        }
        if self._per_collection:
            db, _, coll = scope.partition(".")
            return self.client[db][coll].watch(**mongo_compat.stream_options(options))
        return self.client.watch(self.target.pipeline(), **options)

    # --- streaming --------------------------------------------------------------------------

    def _pump(
        self, streams: dict[str, ChangeStream[RawBSONDocument]], stop: threading.Event, dry: bool
    ) -> None:
        """Move events from the streams to the journal until stopped (or dry, if ``dry``)."""
        next_reconcile = time.monotonic() + self.reconcile_s
        last_checkpoint = time.monotonic()
        while not stop.is_set():
            started, idle, ran_dry = time.monotonic(), True, True
            for scope in list(streams):
                got, scope_dry = self._drain(scope, streams, stop)
                idle, ran_dry = idle and not got, ran_dry and scope_dry
            # only a stream that ran dry proves its last transaction complete
            self.batcher.flush(stream_dry=ran_dry)
            if idle and dry:
                return
            now = time.monotonic()
            if idle:  # a server that ignores maxAwaitTimeMS must not make this spin
                stop.wait(max(0.0, self.max_await_ms / 1000 - (now - started)))
            if idle and now - last_checkpoint >= self.checkpoint_s:
                last_checkpoint = now
                self._checkpoint(streams)
            if now >= next_reconcile and not self.batcher.pending:  # never inside a transaction
                next_reconcile = now + self.reconcile_s
                self._reconcile_streams(streams)
        self.batcher.flush(stream_dry=False)  # a transaction cut off here is re-read later

    def _drain(
        self, scope: str, streams: dict[str, ChangeStream[RawBSONDocument]], stop: threading.Event
    ) -> tuple[int, bool]:
        """Take what ``streams[scope]`` has ready now: how many events it gave, and whether
        it ran dry (rather than reaching the limit or being stopped)."""
        stream, got = streams[scope], 0
        while got < DRAIN_LIMIT and not stop.is_set():
            change = self._next(stream)
            if change is None:
                return got, True
            got += 1
            event = self._event(change, scope)
            if event is not None:
                self.batcher.add(event)
            if event is not None and event.op is Op.MARKER and event.key == "invalidate":
                self.batcher.flush(stream_dry=True)
                stream.close()
                if self._per_collection:  # the collection is gone: reconciling records it
                    del streams[scope]
                else:
                    streams[scope] = self._open_stream(
                        scope, bson.decode(event.position), start_after=True
                    )
                return got, True
        return got, False

    @staticmethod
    def _next(stream: ChangeStream[RawBSONDocument]) -> RawBSONDocument | None:
        return stream.try_next() if stream.alive else None

    def _event(self, change: RawBSONDocument, scope: str) -> ChangeEvent | None:
        raw: Mapping[str, Any] = mongo_compat.repair(change) if self._per_collection else change
        try:
            event = normalize(raw)
        except CorruptionError as exc:  # kept whole, so nothing the server said is lost
            log.error("MongoDB %s: unreadable change event: %s", self.target.name, exc)
            self.status.alerts.append(f"unreadable change event recorded as is: {exc}")
            token = change.get("_id")
            position = bytes(token.raw) if isinstance(token, RawBSONDocument) else b""
            reason = {"reason": str(exc)}
            return self._system(
                Op.MARKER, "unreadable", after=bytes(change.raw), position=position, meta=reason
            )
        to = (event.meta or {}).get("to", "")
        if event.key != "invalidate" and not (
            self.target.wants(event.namespace)
            or self.target.wants(to)
            or self._whole_database(event)
        ):
            return None
        meta = dict(event.meta or {})
        meta[META_DEPLOYMENT] = self.target.name
        if scope != ALL_SCOPE:
            meta[META_STREAM] = scope
        self.status.last_change_us = event.source_ts
        self.status.lag_s = round(max(0.0, time.time() - event.source_ts / 1_000_000), 3)
        return event._replace(meta=meta)

    def _whole_database(self, event: ChangeEvent) -> bool:
        return "." not in event.namespace and self.target.wants_database(event.namespace)

    def _checkpoint(self, streams: Mapping[str, ChangeStream[RawBSONDocument]]) -> None:
        """Record positions that moved while nothing protected changed (keeps them fresh in
        the oplog window)."""
        events = []
        for scope, stream in streams.items():
            token = stream.resume_token
            position = bson.encode(token) if token is not None else b""
            if position and position != self.state.positions.get(scope):
                events.append(self._system(Op.CHECKPOINT, scope, position=position))
        if events:
            self._append(events)

    def _history_lost(self, exc: OperationFailure) -> None:
        reason = f"change stream history lost (code {exc.code}); re-syncing from scratch"
        self.status.alerts.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {reason}")
        log.error("MongoDB %s: %s", self.target.name, reason)
        self.batcher.discard()
        self._append([self._system(Op.GAP, "", meta={"reason": reason})])
        raise _HistoryLost(reason) from exc

    # --- initial sync and reconciling -------------------------------------------------------

    def _initial_sync(self, stop: threading.Event) -> None:
        self.status.enter("syncing")
        self._summary.initial_sync = True
        live = self._collection_infos()
        scopes = sorted(live) if self._per_collection else [ALL_SCOPE]
        positions = {scope: self._start_position(scope) for scope in scopes}
        start = bson.encode({k: RawBSONDocument(v) for k, v in positions.items()})
        self._append([self._system(Op.MARKER, SYNC_START, after=start)])
        for namespace, info in sorted(live.items()):
            self._copy(namespace, info, stop)
        self._append([self._system(Op.MARKER, SYNC_END)])
        log.info("MongoDB %s: initial sync done", self.target.name)

    def _start_position(self, scope: str) -> bytes:
        with self._open_stream(scope, None) as stream:
            token = stream.resume_token
        if token is None:
            raise SourceUnavailable(f"MongoDB {self.target.name} gave no change stream position")
        return bson.encode(token)

    def _collection_infos(self) -> dict[str, Mapping[str, Any]]:
        infos: dict[str, Mapping[str, Any]] = {}
        databases = self.target.databases or [
            db for db in self.client.list_database_names() if self.target.wants_database(db)
        ]
        for db in databases:
            for info in self.client[db].list_collections():
                ns = f"{db}.{info['name']}"
                if info.get("type", "collection") == "collection" and self.target.wants(ns):
                    infos[ns] = info
        return infos

    def _copy(self, namespace: str, info: Mapping[str, Any] | None, stop: threading.Event) -> None:
        """Append the collection's metadata (if new or changed) and every document it holds."""
        db, _, coll = namespace.partition(".")
        self._append(self._metadata_changes({namespace: info}))
        cursor = self.client[db][coll].find({}, batch_size=COPY_BATCH)
        for batch in iter(lambda: list(islice(cursor, COPY_BATCH)), []):
            if stop.is_set():
                raise _Stop(namespace)
            ts = now_us()
            meta = {META_OP: "sync", META_DEPLOYMENT: self.target.name}
            self._append(
                [
                    ChangeEvent(
                        Source.MONGODB,
                        namespace,
                        document_id_key(bytes(doc.raw)),
                        Op.INSERT,
                        ts,
                        after=bytes(doc.raw),
                        meta=meta,
                    )
                    for doc in batch
                ]
            )
            self._summary.documents_copied += len(batch)
            self.status.documents_copied += len(batch)

    def _metadata_changes(self, infos: Mapping[str, Mapping[str, Any] | None]) -> list[ChangeEvent]:
        """``collection`` markers for those of ``infos`` whose options or indexes the journal
        does not hold yet."""
        events = []
        for namespace, info in infos.items():
            db, _, coll = namespace.partition(".")
            indexes = list(self.client[db][coll].list_indexes())
            options = (info or {}).get("options", {})
            uuid = (info or {}).get("info", {}).get("uuid")
            metadata = bson.encode({"options": options, "indexes": indexes, "uuid": uuid})
            if metadata != self.state.collections.get(namespace):
                events.append(
                    self._system(Op.MARKER, COLLECTION_MARKER, namespace=namespace, after=metadata)
                )
        return events

    def _reconcile(self) -> None:
        """Record collections dropped, renamed or changed without a stream event."""
        live = self._collection_infos()
        events, new = [], [ns for ns in live if ns not in self.state.collections]
        for gone in [ns for ns in self.state.collections if ns not in live]:
            renamed_to = _same_uuid(self.state.collections[gone], live, new)
            events.append(self._vanished(gone, renamed_to))
            self._summary.dropped += 1
        self._append(events + self._metadata_changes(live))
        self._summary.collections = len(live)

    def _vanished(self, namespace: str, renamed_to: str) -> ChangeEvent:
        meta = {META_OP: "rename" if renamed_to else "drop", "detected": "reconcile"}
        if renamed_to:
            meta["to"] = renamed_to
        op = Op.MOVE if renamed_to else Op.DELETE
        return self._system(op, "", namespace=namespace, meta=meta)

    def _reconcile_streams(self, streams: dict[str, ChangeStream[RawBSONDocument]]) -> None:
        """Reconcile; where each collection has its own stream, follow the changed list."""
        self._reconcile()
        self._open_streams(streams)

    # --- appending ------------------------------------------------------------------------

    def _system(
        self,
        op: Op,
        key: str,
        *,
        namespace: str = "",
        after: bytes | None = None,
        position: bytes = b"",
        meta: Mapping[str, str] | None = None,
    ) -> ChangeEvent:
        """A marker, gap or checkpoint of this deployment (``key`` doubles as the scope of a
        checkpoint)."""
        meta = {**(meta or {}), META_DEPLOYMENT: self.target.name}
        if op is Op.CHECKPOINT:
            if key != ALL_SCOPE:
                meta[META_STREAM] = key
            namespace, key = key, ""
        return ChangeEvent(
            Source.MONGODB, namespace, key, op, now_us(), after=after, position=position, meta=meta
        )

    def _append(self, events: Sequence[ChangeEvent]) -> None:
        if not events:
            return
        self.batcher.flush(stream_dry=True)
        self.sink.append(events)
        self._appended(events)

    def _appended(self, events: Sequence[ChangeEvent]) -> None:
        for event in events:
            self.state.apply(event)
        self.status.events += len(events)
        self._summary.events += len(events)


def backoff_delay(failures: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random."""
    step = min(cap, base * 2 ** min(failures - 1, 16))
    return step / 2 + random.uniform(0, step / 2)


def _same_uuid(metadata: bytes, live: Mapping[str, Mapping[str, Any]], new: list[str]) -> str:
    """The new namespace whose collection UUID equals the vanished one's, or ``""``."""
    if not metadata:
        return ""
    uuid = bson.decode(metadata).get("uuid")
    if not isinstance(uuid, bytes) or not any(uuid):  # nx-27017's all-zero UUIDs prove nothing
        return ""
    return next((ns for ns in new if live[ns].get("info", {}).get("uuid") == uuid), "")
