"""MongoDB change events, as the server documents them, turned into journal events.

Pure functions, no I/O: the change stream reader hands each change document here as a
``RawBSONDocument`` (so the after-image is the server's exact BSON: types, field order and
``_id`` type survive), and gets back one ``ChangeEvent``.

Mapping (documented in docs/FORMAT.md):

- insert / update / replace / delete -> INSERT / UPDATE / REPLACE / DELETE of one document,
  keyed by its ``_id`` in canonical extended JSON, so ``1``, ``"1"`` and ``ObjectId(...)``
  never collide; the after-image is ``fullDocument`` (absent for deletes);
- drop -> DELETE with an empty key (the whole collection); dropDatabase -> DELETE of
  namespace ``db`` with an empty key; rename -> MOVE from ``ns`` to ``meta["to"]``;
  invalidate -> MARKER (the stream must be reopened with ``startAfter``);
- the resume token becomes the event's ``position``; the transaction (``lsid`` +
  ``txnNumber``) its ``txn``; the update delta (updatedFields, removedFields,
  truncatedArrays) is kept in ``meta["update"]`` as canonical extended JSON.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument
from bson.timestamp import Timestamp

from journal.canonical import canonical_key
from journal.errors import CorruptionError
from journal.events import ChangeEvent, Op, Source, now_us
from journal.meta import META_OP, META_TO

__all__ = [
    "DOCUMENT_OPS",
    "document_id_key",
    "META_OP",
    "META_TO",
    "META_UPDATE",
    "canonical_key",
    "normalize",
    "source_ts_us",
]

DOCUMENT_OPS = {
    "insert": Op.INSERT,
    "update": Op.UPDATE,
    "replace": Op.REPLACE,
    "delete": Op.DELETE,
}
META_UPDATE = "update"
META_DOCUMENT_KEY = "document_key"
META_CLUSTER_TIME = "cluster_time"
# Our own decoding, not the client's: keys and deltas must not depend on how the MongoClient was
# configured (uuidRepresentation, tz_aware), and a date outside Python's range (BSON allows any
# int64 milliseconds) must not stop capture.
_DECODE: CodecOptions[dict[str, Any]] = CodecOptions(
    datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def source_ts_us(change: Mapping[str, Any]) -> int:
    """When the change happened: ``wallTime`` (ms) if given, else ``clusterTime`` (s)."""
    wall = change.get("wallTime")
    if isinstance(wall, datetime.datetime):
        return _datetime_us(wall)
    cluster = change.get("clusterTime")
    if isinstance(cluster, Timestamp):
        return cluster.time * 1_000_000
    if isinstance(cluster, datetime.datetime):
        return _datetime_us(cluster)
    return now_us()


def _datetime_us(moment: datetime.datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    # integer arithmetic: float seconds * 1e6 is off by one for some microsecond values
    return (moment - _EPOCH) // _MICROSECOND


def normalize(change: Mapping[str, Any]) -> ChangeEvent:
    """One change stream document as one journal event."""
    op_type = change.get("operationType")
    ns = change.get("ns") or {}
    namespace = _namespace(ns)
    meta = {META_OP: str(op_type)}
    cluster = change.get("clusterTime")
    if isinstance(cluster, Timestamp):
        meta[META_CLUSTER_TIME] = f"{cluster.time}.{cluster.inc}"
    common: dict[str, Any] = {
        "source_ts": source_ts_us(change),
        "position": _token_bytes(change.get("_id")),
        "txn": _txn(change),
    }
    if op_type in DOCUMENT_OPS:
        key, extra = _key(change)
        meta.update(extra)
        meta.update(_update_meta(change))
        after = None if op_type == "delete" else _raw(change.get("fullDocument"))
        return ChangeEvent(
            Source.MONGODB, namespace, key, DOCUMENT_OPS[op_type], after=after, meta=meta, **common
        )
    return _collection_event(str(op_type), ns, change, meta, common)


def _collection_event(
    op_type: str,
    ns: Mapping[str, Any],
    change: Mapping[str, Any],
    meta: dict[str, str],
    common: dict[str, Any],
) -> ChangeEvent:
    if op_type == "drop":
        return ChangeEvent(Source.MONGODB, _namespace(ns), "", Op.DELETE, meta=meta, **common)
    if op_type == "dropDatabase":
        return ChangeEvent(
            Source.MONGODB, str(ns.get("db", "")), "", Op.DELETE, meta=meta, **common
        )
    if op_type == "rename":
        meta[META_TO] = _namespace(change.get("to") or {})
        return ChangeEvent(Source.MONGODB, _namespace(ns), "", Op.MOVE, meta=meta, **common)
    # invalidate, and event types newer than this code (create, createIndexes, ...): recorded,
    # never dropped, so a later version can interpret them.
    return ChangeEvent(Source.MONGODB, _namespace(ns), op_type, Op.MARKER, meta=meta, **common)


def _namespace(ns: Mapping[str, Any]) -> str:
    db, coll = ns.get("db", ""), ns.get("coll")
    return f"{db}.{coll}" if coll is not None else str(db)


def _key(change: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    document_key = _plain(change.get("documentKey"))
    if not isinstance(document_key, Mapping) or "_id" not in document_key:
        raise CorruptionError(f"{change.get('operationType')} event without documentKey._id")
    extra = {}
    if len(document_key) > 1:  # sharded collections add the shard key
        extra[META_DOCUMENT_KEY] = canonical_key(document_key)
    return canonical_key(document_key["_id"]), extra


def _update_meta(change: Mapping[str, Any]) -> dict[str, str]:
    delta = change.get("updateDescription")
    if not isinstance(delta, Mapping):
        return {}
    return {META_UPDATE: canonical_key(_plain(delta))}


def _txn(change: Mapping[str, Any]) -> str:
    lsid, number = change.get("lsid"), change.get("txnNumber")
    if lsid is None or number is None:
        return ""
    # a session is the whole lsid: the server tells sessions apart by id *and* user (uid)
    session = _plain(lsid)
    parts = list(session.values()) if isinstance(session, Mapping) else [session]
    return ":".join([*map(_txn_part, parts), str(int(number))])


def _txn_part(value: Any) -> str:
    return value.hex() if isinstance(value, bytes) else canonical_key(value)


def _raw(document: Any) -> bytes | None:
    """The exact BSON of a sub-document, or None when the server sent none."""
    if document is None:
        return None
    if isinstance(document, RawBSONDocument):
        return bytes(document.raw)
    return bson.encode(document)


def _token_bytes(token: Any) -> bytes:
    if token is None:
        return b""
    return _raw(token) or b""


def _plain(value: Any) -> Any:
    """RawBSONDocument trees as plain dicts, so json_util can render them."""
    if isinstance(value, RawBSONDocument):
        return bson.decode(value.raw, codec_options=_DECODE)
    return value


_ID_ELEMENT = b"_id\x00"
_FIXED_SIZES = {0x01: 8, 0x07: 12, 0x10: 4, 0x12: 8}  # double, ObjectId, int32, int64


def document_id_key(raw: bytes) -> str:
    """``canonical_key`` of a stored document's ``_id``, read without decoding the document.

    MongoDB stores ``_id`` first; when it is there with a common type, only that element is
    decoded (an initial sync does this for every document). Anything else takes the slow,
    general path.
    """
    kind, name_end = raw[4], 5 + len(_ID_ELEMENT)
    if raw[5:name_end] == _ID_ELEMENT:
        size = _FIXED_SIZES.get(kind)
        if size is None and kind == 0x02:  # string: int32 length (with its NUL) + bytes
            size = 4 + int.from_bytes(raw[name_end : name_end + 4], "little")
        if size is not None:
            element = raw[4 : name_end + size]
            return canonical_key(
                bson.decode((len(element) + 5).to_bytes(4, "little") + element + b"\x00")["_id"]
            )
    return canonical_key(bson.decode(raw)["_id"])
