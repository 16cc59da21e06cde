"""Event batch encoding: column layout, runs, meta columns, and reading every schema version."""

from __future__ import annotations

import io

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

import journal.avro as avro
from journal.errors import CorruptionError
from journal.events import ChangeEvent, Op, Source
from tests.journal.eventgen import conversation, events

VERSIONS = [1, 2]

# Three events encoded as schema v1 (first_seq 7, capture_ts 9) when v1 was current: frozen
# bytes, so v1 stays readable whatever becomes of the code that wrote them.
V1_BATCH = bytes.fromhex(
    "0e068080f281838985068280f281838985068480f28183898506000212000206000600020400060202020006"
    "126170702e757365727308726f6f740c73797374656d000602020200061a7b22246f6964223a202231227d02"
    "62106261636b75702d310006000c0e000602020200060a0500000000000000000606746f6b00000002000002"
    "060004023004146465706c6f796d656e74086d61696e106d6f6e676f5f6f700c696e7365727400023102106f"
    "6c645f7061746802610000"
)
V1_EVENTS = [
    ChangeEvent(
        Source.MONGODB, "app.users", '{"$oid": "1"}', Op.INSERT, 1_700_000_000_000_000,
        b"\x05\x00\x00\x00\x00", b"tok", meta={"deployment": "main", "mongo_op": "insert"},
        capture_ts=9, seq=7,
    ),
    ChangeEvent(
        Source.FILESYSTEM, "root", "b", Op.MOVE, 1_700_000_000_000_001,
        meta={"old_path": "a"}, capture_ts=9, seq=8,
    ),
    ChangeEvent(
        Source.SYSTEM, "system", "backup-1", Op.MARKER, 1_700_000_000_000_002, capture_ts=9, seq=9
    ),
]  # fmt: skip


@pytest.mark.parametrize("version", VERSIONS, ids=["v1", "v2"])
@given(st.lists(events, min_size=1, max_size=40))
def test_encode_decode_round_trip(version: int, batch: list[ChangeEvent]) -> None:
    got = avro.decode_events(avro.encode_events(batch, 10, 99, version), version)
    assert got == [e._replace(seq=10 + i) for i, e in enumerate(batch)]


def test_current_version_is_written_by_default() -> None:
    batch = [conversation(1)]
    assert avro.CURRENT_SCHEMA_VERSION == 2
    assert avro.encode_events(batch, 1, 5) == avro.encode_events(batch, 1, 5, 2)


def test_frozen_v1_batch_stays_readable() -> None:
    assert avro.decode_events(V1_BATCH, 1) == V1_EVENTS
    assert avro.encode_events(V1_EVENTS, 7, 9, 1) == V1_BATCH, "v1 is still written the same"


def test_v1_batch_does_not_decode_as_v2() -> None:
    with pytest.raises(CorruptionError, match="does not decode as schema v2"):
        avro.decode_events(V1_BATCH, 2)


def test_one_collection_batch_is_one_run_per_column() -> None:
    batch = [conversation(i) for i in range(100)]
    mixed = [*batch[:50], batch[50]._replace(op=Op.UPDATE), *batch[51:]]
    assert len(avro.encode_events(mixed, 1, 5)) > len(avro.encode_events(batch, 1, 5)), (
        "a second op in the batch costs extra runs"
    )
    assert avro.decode_events(avro.encode_events(mixed, 1, 5), 2)[50].op is Op.UPDATE


def _meta_record(batch: list[ChangeEvent]) -> dict[str, object]:
    body = avro.encode_events(batch, 1, 5, 2)
    record = fastavro.schemaless_reader(io.BytesIO(body), avro._parsed(2), None)
    assert isinstance(record, dict)
    meta = record["meta"]
    assert isinstance(meta, dict)
    return meta


def test_v2_meta_is_one_run_per_key_when_every_event_shares_it() -> None:
    batch = [conversation(i)._replace(meta={"deployment": "main"}) for i in range(100)]
    assert _meta_record(batch) == {
        "keys": ["deployment"],
        "columns": [{"values": ["main"], "lengths": [100]}],
    }
    assert _meta_record([conversation(1)]) == {"keys": [], "columns": []}


def test_v2_meta_columns_have_nulls_where_a_key_is_absent() -> None:
    metas = [{"mongo_op": "update", "deployment": "a"}, None, {"deployment": "a", "txn_end": "1"}]
    batch = [conversation(i)._replace(meta=m) for i, m in enumerate(metas)]
    assert _meta_record(batch) == {
        "keys": ["deployment", "mongo_op", "txn_end"],
        "columns": [
            {"values": ["a", None, "a"], "lengths": [1, 1, 1]},
            {"values": ["update", None], "lengths": [1, 2]},
            {"values": [None, "1"], "lengths": [2, 1]},
        ],
    }
    decoded = avro.decode_events(avro.encode_events(batch, 1, 5, 2), 2)
    assert [e.meta for e in decoded] == metas


@pytest.mark.parametrize("version", VERSIONS, ids=["v1", "v2"])
def test_an_empty_meta_reads_back_as_none(version: int) -> None:
    batch = [conversation(1)._replace(meta={}), conversation(2)._replace(meta={"k": ""})]
    got = avro.decode_events(avro.encode_events(batch, 1, 5, version), version)
    assert [e.meta for e in got] == [None, {"k": ""}]


def test_a_meta_map_shared_by_decoded_events_cannot_be_changed() -> None:
    batch = [conversation(i)._replace(meta={"deployment": "main"}) for i in range(3)]
    first, second, _ = avro.decode_events(avro.encode_events(batch, 1, 5), 2)
    assert first.meta == second.meta == {"deployment": "main"}
    with pytest.raises(TypeError):
        first.meta["deployment"] = "other"  # type: ignore[index]
    assert second.meta == {"deployment": "main"}, "a change must not leak to other events"
    mixed = [*batch, conversation(3)._replace(meta={"deployment": "x"})]
    *_, last = avro.decode_events(avro.encode_events(mixed, 1, 5), 2)
    assert last.meta == {"deployment": "x"}


def test_v2_meta_runs_that_miss_the_event_count_are_corruption() -> None:
    batch = [conversation(i)._replace(meta={"deployment": "main"}) for i in range(3)]
    schema = avro._parsed(2)
    record = fastavro.schemaless_reader(io.BytesIO(avro.encode_events(batch, 1, 5)), schema, None)
    assert isinstance(record, dict)
    record["meta"]["columns"][0]["lengths"] = [2]
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    with pytest.raises(CorruptionError, match="does not decode"):
        avro.decode_events(buf.getvalue(), 2)


def test_meta_values_must_be_strings() -> None:
    with pytest.raises(ValueError, match="does not fit the event schema"):
        avro.encode_events([conversation(1)._replace(meta={"n": 1})], 1, 1)  # type: ignore[dict-item]


def test_empty_document_is_refused() -> None:
    with pytest.raises(ValueError, match="empty document"):
        avro.encode_events([conversation(1)._replace(after=b"")], 1, 1)


@pytest.mark.parametrize("version", VERSIONS, ids=["v1", "v2"])
def test_garbage_is_corruption_not_a_crash(version: int) -> None:
    with pytest.raises(CorruptionError, match="does not decode"):
        avro.decode_events(b"\x02\xff\xff\xff\xff\x0f", version)


def test_unknown_version_is_corruption() -> None:
    with pytest.raises(CorruptionError, match="unknown event schema version 99"):
        avro.decode_events(b"", 99)
