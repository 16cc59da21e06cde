"""Avro encoding of event batches, with every schema version ever written kept readable.

A frame body is one Avro ``EventBatch`` record that stores its events column by column
(schemaless: the schema version sits in the frame header). Columns keep both directions in
fastavro's C loops and let readers build events with ``zip``; a row-per-record layout
decodes about half as fast. Columns that rarely change within a batch (source, namespace,
op, transaction, capture time) are run-length encoded: fastavro spends 150-250 ns on every
element it decodes, and a batch from one collection has one run.

Version 2 stores ``meta`` as one run-length encoded column per key; version 1 stored it as
a sparse map of maps, which cost more to decode than every other column together (a
MongoDB event's ``deployment`` alone was four elements). Each version is read with its own
schema and turned into equal events (a ``meta`` is a ``Mapping``: events whose maps are all
the same may share one read-only view); writing uses the current one.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from itertools import chain, groupby, repeat
from types import MappingProxyType
from typing import Any, cast

import fastavro

from journal.errors import CorruptionError
from journal.events import ChangeEvent, FileImage, Op, Source

__all__ = ["CURRENT_SCHEMA_VERSION", "decode_events", "encode_events", "schema_json"]

CURRENT_SCHEMA_VERSION = 2
_SOURCE = {s.value: s for s in Source}.__getitem__
_OP = {o.value: o for o in Op}.__getitem__
_SOURCE_NAME = {s: s.value for s in Source}.__getitem__
_OP_NAME = {o: o.value for o in Op}.__getitem__
# tuple.__new__ straight from C: a third faster than ChangeEvent._make per event.
_new_event = tuple.__new__


def schema_json(version: int = CURRENT_SCHEMA_VERSION) -> dict[str, Any]:
    """The batch schema of ``version``, as shipped in ``journal/schemas``."""
    text = resources.files("journal.schemas").joinpath(f"event_batch.v{version}.avsc")
    try:
        return dict(json.loads(text.read_text()))
    except FileNotFoundError:
        raise CorruptionError(f"unknown event schema version {version}") from None


@cache
def _parsed(version: int) -> Any:
    return fastavro.parse_schema(schema_json(version))


def _sparse(column: Sequence[Any]) -> dict[str, Any]:
    return {str(i): v for i, v in enumerate(column) if v}


def _meta_columns(meta: Sequence[Mapping[str, str] | None]) -> dict[str, Any]:
    """v2 ``meta``: per key (sorted), the runs of its value in each event (None: absent)."""
    keys = sorted({k for m in meta if m for k in m})
    return {"keys": keys, "columns": [_runs([m.get(k) if m else None for m in meta]) for k in keys]}


def _runs(column: Sequence[Any], name: Callable[[Any], Any] | None = None) -> dict[str, list[Any]]:
    """Run-length encode ``column``; ``name`` maps each run's value (enum -> symbol)."""
    if column.count(column[0]) == len(column):  # the usual batch: one run, found in C
        values, lengths = [column[0]], [len(column)]
    else:
        values, lengths = [], []
        for value, run in groupby(column):
            values.append(value)
            lengths.append(len(list(run)))
    return {"values": list(map(name, values)) if name else values, "lengths": lengths}


def _expand(runs: dict[str, list[Any]], name: Callable[[Any], Any] | None = None) -> Iterator[Any]:
    """The column ``runs`` encodes; ``name`` maps each run's value (symbol -> enum) once."""
    values = runs["values"] if name is None else list(map(name, runs["values"]))
    return chain.from_iterable(map(repeat, values, runs["lengths"]))


def encode_events(
    events: Sequence[ChangeEvent], first_seq: int, capture_ts: int, version: int | None = None
) -> bytes:
    """Encode ``events`` numbered from ``first_seq``; a zero capture_ts becomes ``capture_ts``.

    ``version`` is the schema to write, by default the current one (older ones: for tests
    that need old data)."""
    version = CURRENT_SCHEMA_VERSION if version is None else version
    (source, namespace, key, op, source_ts, after, position, txn, meta, cap, _) = zip(
        *events, strict=True
    )
    if cap.count(0) == len(cap):  # the journal stamps them all: one run
        cap = (capture_ts,) * len(cap)
    elif 0 in cap:
        cap = tuple(c or capture_ts for c in cap)
    batch = {
        "first_seq": first_seq,
        "source_ts": source_ts,
        "capture_ts": _runs(cap),
        "source": _runs(source, _SOURCE_NAME),
        "namespace": _runs(namespace),
        "key": key,
        "op": _runs(op, _OP_NAME),
        "after": [a if type(a) is bytes else b"" for a in after],
        "files": {str(i): a._asdict() for i, a in enumerate(after) if type(a) is FileImage},
        "position": position,
        "txn": _runs(txn),
    }
    if b"" in after:
        raise ValueError("an empty document image is not a document; use after=None")
    buf = io.BytesIO()
    try:
        batch["meta"] = _meta_columns(meta) if version >= 2 else _sparse(meta)
        fastavro.schemaless_writer(buf, _parsed(version), batch)
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"event does not fit the event schema: {exc}") from exc
    return buf.getvalue()


def _after_column(b: dict[str, Any]) -> list[Any]:
    after: list[Any] = [a or None for a in b["after"]]
    for i, f in b["files"].items():
        after[int(i)] = FileImage(**f)
    return after


def _sparse_meta(b: dict[str, Any], n: int) -> list[Any]:
    """v1: a sparse map, event index -> that event's map."""
    meta: list[Any] = [None] * n
    for i, m in b["meta"].items():
        meta[int(i)] = m
    return meta


def _column_meta(b: dict[str, Any], n: int) -> list[Any]:
    """v2: a column per key, back to a map per event (None when it has no key).

    When every event has the same map (the usual batch: one deployment), they share one
    read-only view of it: a map per event would cost more than the rest of the column."""
    keys, columns = b["meta"]["keys"], b["meta"]["columns"]
    if all(c["lengths"] == [n] and len(c["values"]) == 1 for c in columns):
        one = {k: c["values"][0] for k, c in zip(keys, columns, strict=True)}
        one = {k: v for k, v in one.items() if v is not None}
        return [MappingProxyType(one) if one else None] * n
    rows = zip(*map(_expand, columns), strict=True)
    return [{k: v for k, v in zip(keys, row, strict=True) if v is not None} or None for row in rows]


_META = {1: _sparse_meta, 2: _column_meta}  # schema version -> its meta decoder


def decode_events(data: bytes, version: int) -> list[ChangeEvent]:
    """Decode a frame body written with schema ``version``."""
    schema = _parsed(version)  # CorruptionError for a version this code does not know
    try:
        b = cast(dict[str, Any], fastavro.schemaless_reader(io.BytesIO(data), schema, None))
        first, n = b["first_seq"], len(b["key"])
        columns = zip(
            _expand(b["source"], _SOURCE),
            _expand(b["namespace"]),
            b["key"],
            _expand(b["op"], _OP),
            b["source_ts"],
            _after_column(b),
            b["position"],
            _expand(b["txn"]),
            _META[version](b, n),
            _expand(b["capture_ts"]),
            range(first, first + n),
            strict=True,
        )
        return list(map(_new_event, repeat(ChangeEvent), columns))
    except (EOFError, ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
        raise CorruptionError(f"event batch does not decode as schema v{version}: {exc}") from exc
