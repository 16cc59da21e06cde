"""Event batch encoding: column layout, runs, and reading old schema versions."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import journal.avro as avro
from journal.errors import CorruptionError
from journal.events import ChangeEvent, Op, Source
from tests.journal.eventgen import conversation, events


@given(st.lists(events, min_size=1, max_size=40))
def test_encode_decode_round_trip(batch: list[ChangeEvent]) -> None:
    got = avro.decode_events(avro.encode_events(batch, 10, 99), avro.CURRENT_SCHEMA_VERSION)
    assert got == [e._replace(seq=10 + i) for i, e in enumerate(batch)]


def test_one_collection_batch_is_one_run_per_column() -> None:
    batch = [conversation(i) for i in range(100)]
    mixed = [*batch[:50], batch[50]._replace(op=Op.UPDATE), *batch[51:]]
    assert len(avro.encode_events(mixed, 1, 5)) > len(avro.encode_events(batch, 1, 5)), (
        "a second op in the batch costs extra runs"
    )
    assert avro.decode_events(avro.encode_events(mixed, 1, 5), 1)[50].op is Op.UPDATE


def test_empty_document_is_refused() -> None:
    with pytest.raises(ValueError, match="empty document"):
        avro.encode_events([conversation(1)._replace(after=b"")], 1, 1)


def test_garbage_is_corruption_not_a_crash() -> None:
    with pytest.raises(CorruptionError, match="does not decode"):
        avro.decode_events(b"\x02\xff\xff\xff\xff\x0f", avro.CURRENT_SCHEMA_VERSION)


def test_unknown_version_is_corruption() -> None:
    with pytest.raises(CorruptionError, match="unknown event schema version 99"):
        avro.decode_events(b"", 99)


def test_batches_of_an_older_schema_stay_readable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A future v2 that adds a field with a default reads v1 batches through resolution."""
    old = avro.encode_events([conversation(1)], 1, 5)
    v2 = copy.deepcopy(avro.schema_json(1))
    v2["fields"].append({"name": "tenant", "type": "string", "default": ""})
    schemas: dict[int, dict[str, Any]] = {1: avro.schema_json(1), 2: v2}
    monkeypatch.setattr(avro, "schema_json", schemas.__getitem__)
    monkeypatch.setattr(avro, "CURRENT_SCHEMA_VERSION", 2)
    avro._parsed.cache_clear()
    try:
        (event,) = avro.decode_events(old, 1)
    finally:
        avro._parsed.cache_clear()
    assert event == conversation(1)._replace(seq=1, capture_ts=5)
    assert event.source is Source.MONGODB
