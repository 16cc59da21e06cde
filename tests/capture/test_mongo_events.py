"""MongoDB change events, in the shape the manual documents ("Change Events"), as journal events.

Every change document is built as a dict, encoded with ``bson.encode`` and wrapped in a
``RawBSONDocument``: exactly what pymongo yields from a change stream opened with
``document_class=RawBSONDocument``.
"""

from __future__ import annotations

import datetime
import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

import bson
import pytest
from bson import json_util
from bson.binary import Binary, UuidRepresentation
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from bson.son import SON
from bson.timestamp import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from capture.mongo_events import (
    META_CLUSTER_TIME,
    META_DOCUMENT_KEY,
    META_OP,
    META_TO,
    META_UPDATE,
    canonical_key,
    document_id_key,
    normalize,
    source_ts_us,
)
from journal.errors import CorruptionError
from journal.events import ChangeEvent, Op, Source, now_us

CANONICAL = json_util.CANONICAL_JSON_OPTIONS
# wallTime is a BSON date: millisecond precision, decoded by pymongo as naive UTC
WALL = datetime.datetime(2024, 5, 17, 9, 30, 12, 345000)
WALL_US = 1_715_938_212_345_000
CLUSTER = Timestamp(1_715_938_212, 7)
OID = ObjectId("599af247bb69cd89961c986d")
UUID_ID = Binary.from_uuid(uuid.UUID("0b7c6b6e-8f4a-4a4e-9d1d-2f0c3f6b1a11"))
NS = {"db": "chatbot", "coll": "conversations"}
ALL_DOCUMENT_OPS = ["insert", "update", "replace", "delete"]


def token(n: int = 1) -> dict[str, Any]:
    """A resume token: ``{_data: <hex string>}`` as servers since 4.2 send it."""
    return {"_data": f"8266471F24{n:08X}2B042C0100296E5A1004AB1154ACACD849A48C61756D70D3B21F04"}


def raw(document: Mapping[str, Any], codec_options: CodecOptions[Any] | None = None) -> Any:
    """``document`` as pymongo delivers it: a RawBSONDocument over its exact BSON."""
    return RawBSONDocument(bson.encode(document), codec_options)


def change(op: str, n: int = 1, **fields: Any) -> dict[str, Any]:
    """The fields every change event carries, then ``fields`` (None removes a field)."""
    document: dict[str, Any] = {
        "_id": token(n),
        "operationType": op,
        "clusterTime": CLUSTER,
        "wallTime": WALL,
        "ns": NS,
    }
    document.update(fields)
    return {k: v for k, v in document.items() if v is not None}


def insert(_id: Any, n: int = 1, **fields: Any) -> dict[str, Any]:
    """An insert event for a document with ``_id``."""
    full = {"_id": _id, "role": "user", "text": "hola"}
    return change("insert", n, documentKey={"_id": _id}, fullDocument=full, **fields)


def document_event(op: str, _id: Any = OID, n: int = 1, **fields: Any) -> dict[str, Any]:
    """An insert, update, replace or delete event of the documented shape."""
    full = {"_id": _id, "role": "assistant", "text": "hello"}
    shapes: dict[str, dict[str, Any]] = {
        "insert": {"fullDocument": full},
        "update": {
            "updateDescription": {
                "updatedFields": {"text": "hello"},
                "removedFields": [],
                "truncatedArrays": [],
            },
            "fullDocument": full,
        },
        "replace": {"fullDocument": full},
        "delete": {},
    }
    return change(op, n, **({"documentKey": {"_id": _id}} | shapes[op] | fields))


def event_of(document: Mapping[str, Any]) -> ChangeEvent:
    """``normalize`` of ``document`` as pymongo delivers it."""
    return normalize(raw(document))


def meta_of(event: ChangeEvent) -> Mapping[str, str]:
    """The event's meta, which a MongoDB event always has (it names the operation)."""
    assert event.meta is not None, f"no meta on {event}"
    return event.meta


# -- document ids and keys --------------------------------------------------------------------

ID_CASES = [
    ("objectid", OID, '{"$oid": "599af247bb69cd89961c986d"}'),
    ("int", 1, '{"$numberInt": "1"}'),
    ("int64", Int64(1), '{"$numberLong": "1"}'),
    ("str", "1", '"1"'),
    ("uuid", UUID_ID, '{"$binary": {"base64": "C3xrbo9KSk6dHS8MP2saEQ==", "subType": "04"}}'),
    (
        "compound",
        {"user": 7, "day": "2024-05-17"},
        '{"user": {"$numberInt": "7"}, "day": "2024-05-17"}',
    ),
]


@pytest.mark.parametrize(
    ("_id", "expected"), [c[1:] for c in ID_CASES], ids=[c[0] for c in ID_CASES]
)
def test_insert_is_keyed_by_the_typed_id(_id: Any, expected: str) -> None:
    document = insert(_id)
    event = event_of(document)
    assert event.key == expected, f"key of _id {_id!r}"
    assert event.key == canonical_key(_id), "normalize and canonical_key disagree"
    assert event.source is Source.MONGODB and event.op is Op.INSERT, event
    assert event.namespace == "chatbot.conversations", event.namespace
    assert event.source_ts == WALL_US, "source_ts should come from wallTime"
    assert event.position == bson.encode(token()), "position must be the resume token's BSON"
    assert event.after == bson.encode(document["fullDocument"]), "after is not the exact BSON"
    assert event.txn == "", "an insert outside a transaction has no txn"
    assert meta_of(event) == {META_OP: "insert", META_CLUSTER_TIME: "1715938212.7"}, event.meta


def test_int_str_and_objectid_ids_never_collide() -> None:
    ids = [1, "1", ObjectId("000000000000000000000001")]
    keys = {event_of(insert(_id)).key for _id in ids}
    assert len(keys) == 3, f"keys collide: {keys}"


# The BSON values a MongoDB _id may hold (any type but array, regex and undefined).
typed_ids = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(min_size=12, max_size=12).map(ObjectId),
    st.binary(min_size=16, max_size=16).map(lambda b: Binary(b, 4)),
    st.binary(max_size=32).map(Binary),
    st.booleans(),
    st.dictionaries(st.text(alphabet="abcxyz", min_size=1), st.integers(0, 9), max_size=3),
)


@given(a=typed_ids, b=typed_ids)
def test_keys_are_equal_exactly_when_the_bson_ids_are(a: Any, b: Any) -> None:
    same_bson = bson.encode({"_id": a}) == bson.encode({"_id": b})
    same_key = event_of(insert(a)).key == event_of(insert(b)).key
    assert same_key == same_bson, f"{a!r} vs {b!r}: keys equal {same_key}, BSON equal {same_bson}"


@given(_id=typed_ids)
def test_key_round_trips_through_extended_json(_id: Any) -> None:
    key = event_of(insert(_id)).key
    back = json_util.loads(key, json_options=CANONICAL)
    assert bson.encode({"_id": back}) == bson.encode({"_id": _id}), f"{key} does not round-trip"


def test_key_does_not_depend_on_the_clients_codec_options() -> None:
    """A client with uuidRepresentation=standard and tz_aware still yields the same event."""
    options = CodecOptions(
        document_class=RawBSONDocument,
        uuid_representation=UuidRepresentation.STANDARD,
        tz_aware=True,
        tzinfo=datetime.timezone(datetime.timedelta(hours=-3)),
    )
    document = insert(UUID_ID, lsid={"id": UUID_ID, "uid": Binary(b"u" * 32)}, txnNumber=Int64(3))
    assert normalize(raw(document, options)) == event_of(document), "codec options leaked in"


# -- the after-image --------------------------------------------------------------------------


def test_after_is_the_exact_bson_of_full_document() -> None:
    full = {
        "_id": OID,  # the server always stores _id first
        "zeta": 1,  # then the fields in the order written, not sorted
        "price": Decimal128("1234.5600"),
        "at": datetime.datetime(2024, 5, 17, 9, 30, 12, 345000),
        "far": DatetimeMS(2**50),  # beyond Python's datetime range
        "count": Int64(42),
        "small": 42,
        "ratio": -0.0,
        "blob": Binary(b"\x00\x01", 0),
        "nested": {"b": [1, {"c": [Int64(2), "x", None]}], "a": {"deep": True}},
    }
    document = change("insert", documentKey={"_id": OID}, fullDocument=full)
    event = event_of(document)
    assert event.after == bson.encode(full), "after must be byte-identical to fullDocument"
    options: CodecOptions[dict[str, Any]] = CodecOptions(
        datetime_conversion=DatetimeConversion.DATETIME_AUTO
    )
    back = bson.decode(event.after, codec_options=options)
    assert list(back) == list(full), "field order lost"
    assert isinstance(back["count"], Int64) and isinstance(back["price"], Decimal128), back


# -- source_ts --------------------------------------------------------------------------------

TS_CASES = [
    ("walltime", {"wallTime": WALL}, WALL_US),
    ("walltime-beats-clustertime", {"wallTime": WALL, "clusterTime": Timestamp(1, 1)}, WALL_US),
    ("clustertime-seconds", {"wallTime": None}, CLUSTER.time * 1_000_000),
    ("epoch", {"wallTime": datetime.datetime(1970, 1, 1)}, 0),
    (
        "before-epoch",
        {"wallTime": datetime.datetime(1935, 4, 7, 20, 50, 53, 992000)},
        -1_096_168_146_008_000,
    ),
]


@pytest.mark.parametrize(
    ("fields", "expected"), [c[1:] for c in TS_CASES], ids=[c[0] for c in TS_CASES]
)
def test_source_ts(fields: dict[str, Any], expected: int) -> None:
    document = raw(change("insert", **fields))
    assert source_ts_us(document) == expected, f"source_ts of {fields}"


def test_source_ts_without_any_time_is_now() -> None:
    document = raw(change("insert", wallTime=None, clusterTime=None))
    before = now_us()
    assert before <= source_ts_us(document) <= now_us(), "no time should mean capture time"


@given(moment=st.datetimes(timezones=st.sampled_from([datetime.UTC, None])))
def test_source_ts_is_exact_to_the_microsecond(moment: datetime.datetime) -> None:
    epoch = datetime.datetime(1970, 1, 1, tzinfo=moment.tzinfo)
    expected = (moment - epoch) // datetime.timedelta(microseconds=1)
    # pymongo's own decoding truncates to ms, so hand the function a decoded change directly
    assert source_ts_us({"wallTime": moment}) == expected, f"{moment!r}"


# -- updates, replaces, deletes ---------------------------------------------------------------

DELTA = {
    "updatedFields": {
        "text": "hola de nuevo",
        "tokens": Int64(2**40),
        "editedAt": datetime.datetime(2024, 5, 17, 9, 31, 0, 1000),
        "meta.score": Decimal128("0.75"),
        "messages.3": {"role": "user", "parts": ["a", 1]},
    },
    "removedFields": ["draft", "meta.tmp"],
    "truncatedArrays": [{"field": "messages", "newSize": 3}],
}


def test_update_keeps_the_delta_as_canonical_json_that_round_trips() -> None:
    full = {"_id": OID, "text": "hola de nuevo", "messages": [1, 2, 3]}
    document = document_event("update", updateDescription=DELTA, fullDocument=full)
    event = event_of(document)
    assert event.op is Op.UPDATE and event.after == bson.encode(full), event
    delta = meta_of(event)[META_UPDATE]
    back = json_util.loads(delta, json_options=CANONICAL)
    assert bson.encode(back) == bson.encode(DELTA), f"delta does not round-trip: {delta}"
    assert json_util.dumps(back, json_options=CANONICAL) == delta, "delta is not canonical"


# Field values an update may carry; names never start with "$" (see the report on that).
bson_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(max_size=16).map(Binary),
    st.integers(-(2**62), 2**62).map(DatetimeMS),
    st.decimals(-(10**20), 10**20, places=4).map(lambda d: Decimal128(str(d))),
)
field_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00$"), min_size=1, max_size=8
)
bson_values = st.recursive(
    bson_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=3),
    max_leaves=8,
)


@given(updated=st.dictionaries(field_names, bson_values, max_size=4))
def test_any_update_delta_round_trips(updated: dict[str, Any]) -> None:
    delta = {"updatedFields": updated, "removedFields": [], "truncatedArrays": []}
    event = event_of(document_event("update", updateDescription=delta))
    options = CANONICAL.with_options(datetime_conversion=DatetimeConversion.DATETIME_AUTO)
    back = json_util.loads(meta_of(event)[META_UPDATE], json_options=options)
    assert bson.encode(back) == bson.encode(delta), f"{delta!r} lost in {event.meta}"


NO_IMAGE_CASES = [
    ("lookup-found-nothing", "update", {"fullDocument": None}),
    ("no-lookup-asked", "update", {"fullDocument": ...}),
    ("delete", "delete", {}),
    ("delete-with-pre-image", "delete", {"fullDocumentBeforeChange": {"_id": OID, "x": 1}}),
]


@pytest.mark.parametrize(
    ("op", "fields"), [c[1:] for c in NO_IMAGE_CASES], ids=[c[0] for c in NO_IMAGE_CASES]
)
def test_events_without_an_after_image(op: str, fields: dict[str, Any]) -> None:
    document = document_event(op)
    for name, value in fields.items():
        if value is ...:
            document.pop(name, None)
        else:
            document[name] = value
    event = event_of(document)
    assert event.after is None, f"{op} {fields} should have no after-image"
    assert event.key == canonical_key(OID) and event.op.value == op.upper(), event


def test_replace_carries_the_new_document_and_no_delta() -> None:
    full = {"_id": OID, "text": "replaced", "v": Int64(2)}
    event = event_of(change("replace", documentKey={"_id": OID}, fullDocument=full))
    assert event.op is Op.REPLACE and event.after == bson.encode(full), event
    assert META_UPDATE not in meta_of(event), "a replace has no update delta"


@pytest.mark.parametrize("op", ALL_DOCUMENT_OPS)
def test_sharded_document_key_is_kept_in_meta(op: str) -> None:
    document_key = {"tenant": "acme", "region": Int64(3), "_id": OID}
    event = event_of(document_event(op, documentKey=document_key))
    assert event.key == canonical_key(OID), "the key is the _id alone"
    kept = meta_of(event)[META_DOCUMENT_KEY]
    back = json_util.loads(kept, json_options=CANONICAL)
    assert bson.encode(back) == bson.encode(document_key), f"shard key lost: {kept}"


@pytest.mark.parametrize("op", ALL_DOCUMENT_OPS)
def test_unsharded_document_key_adds_no_meta(op: str) -> None:
    assert META_DOCUMENT_KEY not in meta_of(event_of(document_event(op))), op


@pytest.mark.parametrize("op", ALL_DOCUMENT_OPS)
@pytest.mark.parametrize(
    "document_key", [None, {}, {"tenant": "acme"}], ids=["absent", "empty", "no-_id"]
)
def test_document_event_without_document_key_is_corrupt(
    op: str, document_key: dict[str, Any] | None
) -> None:
    document = document_event(op)
    document.pop("documentKey")
    if document_key is not None:
        document["documentKey"] = document_key
    with pytest.raises(CorruptionError, match="documentKey"):
        event_of(document)


# -- collection and database events -----------------------------------------------------------

# (id, change fields, namespace, key, op, extra meta)
COLLECTION_CASES = [
    ("drop", {"operationType": "drop"}, "chatbot.conversations", "", Op.DELETE, {}),
    (
        "rename",
        {"operationType": "rename", "to": {"db": "chatbot", "coll": "archive"}},
        "chatbot.conversations",
        "",
        Op.MOVE,
        {META_TO: "chatbot.archive"},
    ),
    (
        "rename-across-databases",
        {"operationType": "rename", "to": {"db": "cold", "coll": "conversations"}},
        "chatbot.conversations",
        "",
        Op.MOVE,
        {META_TO: "cold.conversations"},
    ),
    (
        "dropDatabase",
        {"operationType": "dropDatabase", "ns": {"db": "chatbot"}},
        "chatbot",
        "",
        Op.DELETE,
        {},
    ),
    ("invalidate", {"operationType": "invalidate", "ns": None}, "", "invalidate", Op.MARKER, {}),
    (
        "createIndexes",
        {
            "operationType": "createIndexes",
            "collectionUUID": UUID_ID,
            "operationDescription": {"indexes": [{"v": 2, "key": {"at": 1}, "name": "at_1"}]},
        },
        "chatbot.conversations",
        "createIndexes",
        Op.MARKER,
        {},
    ),
    ("create", {"operationType": "create"}, "chatbot.conversations", "create", Op.MARKER, {}),
    (
        "reshardCollection",
        {"operationType": "reshardCollection"},
        "chatbot.conversations",
        "reshardCollection",
        Op.MARKER,
        {},
    ),
]


@pytest.mark.parametrize(
    ("fields", "namespace", "key", "op", "extra"),
    [c[1:] for c in COLLECTION_CASES],
    ids=[c[0] for c in COLLECTION_CASES],
)
def test_collection_and_database_events(
    fields: dict[str, Any], namespace: str, key: str, op: Op, extra: dict[str, str]
) -> None:
    document = change(fields["operationType"], n=9, **fields)
    event = event_of(document)
    assert (event.namespace, event.key, event.op) == (namespace, key, op), event
    assert event.after is None and event.source is Source.MONGODB, event
    assert event.position == bson.encode(token(9)), "an event without a position cannot resume"
    assert event.source_ts == WALL_US, event.source_ts
    expected = {META_OP: fields["operationType"], META_CLUSTER_TIME: "1715938212.7"} | extra
    assert meta_of(event) == expected, event.meta


# -- transactions -----------------------------------------------------------------------------


def lsid(session: str, user: str = "app") -> dict[str, Any]:
    """A logical session id as change events carry it: a UUID and the user's SHA-256."""
    return {
        "id": Binary.from_uuid(uuid.uuid5(uuid.NAMESPACE_URL, session)),
        "uid": Binary(hashlib.sha256(user.encode()).digest()),
    }


def txn_of(session: dict[str, Any], number: int, op: str = "insert", n: int = 1) -> str:
    """The txn of one event of transaction ``number`` in ``session``."""
    document = document_event(op, n=n, lsid=session, txnNumber=Int64(number))
    assert raw(document)["lsid"]["id"].subtype == 4, "lsid.id must be a UUID (subtype 4)"
    return event_of(document).txn


def test_events_of_one_transaction_share_a_txn() -> None:
    txns = {txn_of(lsid("s1"), 5, op, n) for n, op in enumerate(ALL_DOCUMENT_OPS)}
    assert len(txns) == 1 and "" not in txns, f"one transaction, txns {txns}"


TXN_CASES = [
    ("other-txnNumber", lsid("s1"), 6),
    ("other-session", lsid("s2"), 5),
    ("same-session-id-other-user", lsid("s1", user="admin"), 5),
]


@pytest.mark.parametrize(
    ("session", "number"), [c[1:] for c in TXN_CASES], ids=[c[0] for c in TXN_CASES]
)
def test_other_transactions_have_other_txns(session: dict[str, Any], number: int) -> None:
    first, other = txn_of(lsid("s1"), 5), txn_of(session, number)
    assert first != other, f"distinct transactions share txn {first}"


@given(
    sessions=st.lists(
        st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32)),
        min_size=2,
        max_size=2,
    ),
    numbers=st.lists(st.integers(0, 2**63 - 1), min_size=2, max_size=2),
)
def test_txn_is_equal_exactly_when_the_transaction_is(
    sessions: list[tuple[bytes, bytes]], numbers: list[int]
) -> None:
    def txn(i: int) -> str:
        session = {"id": Binary(sessions[i][0], 4), "uid": Binary(sessions[i][1])}
        return txn_of(session, numbers[i])

    same = sessions[0] == sessions[1] and numbers[0] == numbers[1]
    assert (txn(0) == txn(1)) == same, f"{sessions} {numbers}: {txn(0)} vs {txn(1)}"


def test_lsid_without_txn_number_is_no_transaction() -> None:
    document = document_event("insert", lsid=lsid("s1"))
    assert event_of(document).txn == "", "lsid alone is not a transaction"


def test_dates_beyond_pythons_range_do_not_stop_capture() -> None:
    """BSON dates are any int64 of milliseconds; Python's datetime stops at year 9999."""
    far = DatetimeMS(2**60)
    document_key = {"expires": far, "_id": OID}
    delta = {"updatedFields": {"expires": far}, "removedFields": [], "truncatedArrays": []}
    event = event_of(document_event("update", documentKey=document_key, updateDescription=delta))
    expected = '{"$date": {"$numberLong": "1152921504606846976"}}'
    assert expected in meta_of(event)[META_UPDATE], event.meta
    assert expected in meta_of(event)[META_DOCUMENT_KEY], event.meta


@given(
    st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.floats(allow_nan=False),
        st.text(),
        st.builds(ObjectId),
        st.binary(max_size=8),
        st.dictionaries(field_names, st.integers(-(2**31), 2**31 - 1), max_size=2),
    ),
    st.booleans(),
)
def test_document_id_key_matches_the_general_path(value: Any, id_first: bool) -> None:
    fields = [("_id", value), ("x", 1)] if id_first else [("x", 1), ("_id", value)]
    raw = bson.encode(SON(fields))
    assert document_id_key(raw) == canonical_key(bson.decode(raw)["_id"])
