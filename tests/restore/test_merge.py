"""Three-way merge of MongoDB documents (raw BSON) and JSON files."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.datetime_ms import DatetimeMS
from bson.son import SON
from hypothesis import given
from hypothesis import strategies as st

from journal.errors import HindsightError
from restore.merge import MergeImpossible, MergeResult, merge_documents, merge_json

Doc = dict[str, Any]
GONE = object()  # "this field is absent" in a table row


def _encode_json(doc: Doc) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def _canonical_json(raw: bytes) -> str:
    """Type- and order-exact text of a JSON file (1, 1.0 and true differ; key order counts)."""
    return json.dumps(json.loads(raw))


class Format:
    """One merge entry point with its encoder and an exact (type- and order-aware) comparison."""

    def __init__(self, merge: Callable[..., MergeResult], encode: Callable[[Doc], bytes]) -> None:
        self.merge, self.encode = merge, encode

    def run(self, base: Doc | None, live: Doc, restored: Doc) -> MergeResult:
        return self.merge(
            None if base is None else self.encode(base), self.encode(live), self.encode(restored)
        )

    def same(self, data: bytes, expected: Doc) -> bool:
        if self.merge is merge_documents:
            return data == bson.encode(expected)
        return _canonical_json(data) == _canonical_json(self.encode(expected))


FORMATS = [
    pytest.param(Format(merge_documents, bson.encode), id="bson"),
    pytest.param(Format(merge_json, _encode_json), id="json"),
]


# --- the rules, one row each, run on both formats -------------------------------------------

# (base, live, restored, expected, merged, conflicts); base None is the two-way merge.
RULES = [
    pytest.param({"a": 1}, {"a": 1}, {"a": 1}, {"a": 1}, [], [], id="unchanged"),
    pytest.param({"a": 1}, {"a": 2}, {"a": 1}, {"a": 2}, [], [], id="live-only-change-kept"),
    pytest.param(
        {"a": 1}, {"a": 1}, {"a": 3}, {"a": 3}, ["a"], [], id="restored-only-change-taken"
    ),
    pytest.param({"a": 1}, {"a": 2}, {"a": 2}, {"a": 2}, [], [], id="same-change-both"),
    pytest.param(
        {"a": 1}, {"a": 2}, {"a": 3}, {"a": 2}, [], ["a"], id="different-changes-conflict"
    ),
    pytest.param(
        {"a": 1, "b": 1}, {"a": 1, "b": 1}, {"b": 1}, {"b": 1}, ["a"], [], id="restored-removed"
    ),
    pytest.param({"a": 1, "b": 1}, {"b": 1}, {"a": 1, "b": 1}, {"b": 1}, [], [], id="live-removed"),
    pytest.param({"a": 1}, {}, {"a": 3}, {}, [], ["a"], id="live-removed-restored-changed"),
    pytest.param({"a": 1}, {"a": 2}, {}, {"a": 2}, [], ["a"], id="restored-removed-live-changed"),
    pytest.param({"a": 1}, {}, {}, {}, [], [], id="removed-both"),
    pytest.param({}, {"a": 1}, {"b": 2}, {"a": 1, "b": 2}, ["b"], [], id="added-each-side"),
    pytest.param({}, {"a": 1}, {"a": 1}, {"a": 1}, [], [], id="added-same-both"),
    pytest.param({}, {"a": 1}, {"a": 2}, {"a": 1}, [], ["a"], id="added-differently"),
    pytest.param(
        {"t": [1, 2]}, {"t": [1, 2]}, {"t": [1]}, {"t": [1]}, ["t"], [], id="array-restored"
    ),
    pytest.param(
        {"t": [1, 2]},
        {"t": [1, 2, 3]},
        {"t": [1]},
        {"t": [1, 2, 3]},
        [],
        ["t"],
        id="array-conflict-whole",
    ),
    pytest.param(
        {"t": [{"x": 1}]},
        {"t": [{"x": 2}]},
        {"t": [{"y": 1}]},
        {"t": [{"x": 2}]},
        [],
        ["t"],
        id="array-of-docs-no-recursion",
    ),
    pytest.param(
        {"addr": {"city": "A", "zip": "1"}},
        {"addr": {"city": "A", "zip": "2"}},
        {"addr": {"city": "B", "zip": "1"}},
        {"addr": {"city": "B", "zip": "2"}},
        ["addr.city"],
        [],
        id="nested-both-sides-merge",
    ),
    pytest.param(
        {"addr": {"city": "A"}},
        {"addr": {"city": "B"}},
        {"addr": {"city": "C"}},
        {"addr": {"city": "B"}},
        [],
        ["addr.city"],
        id="nested-conflict-dotted",
    ),
    pytest.param(
        {"a": {"b": {"c": 1, "d": 1}}},
        {"a": {"b": {"c": 1, "d": 1}}},
        {"a": {"b": {"c": 2}}},
        {"a": {"b": {"c": 2}}},
        ["a.b.c", "a.b.d"],
        [],
        id="deep-restored-reported-per-field",
    ),
    pytest.param(
        {"a": {"x": 1}},
        {"a": 5},
        {"a": {"x": 2}},
        {"a": 5},
        [],
        ["a"],
        id="object-vs-scalar-conflict",
    ),
    pytest.param(
        {"a": 1},
        {"a": {"x": 1}, "k": 1},
        {"a": {"y": 2}},
        {"a": {"x": 1, "y": 2}, "k": 1},
        ["a.y"],
        [],
        id="both-made-object-merged-as-added",
    ),
    pytest.param(
        {"a": 1}, {"a": 1}, {"a": 1.0}, {"a": 1.0}, ["a"], [], id="int-to-float-is-change"
    ),
    pytest.param({"a": 0}, {"a": 1}, {"a": 1.0}, {"a": 1}, [], ["a"], id="int-vs-float-conflict"),
    pytest.param({"a": 1}, {"a": True}, {"a": 1}, {"a": True}, [], [], id="bool-not-int"),
    pytest.param(
        None,
        {"a": 1, "l": 1},
        {"a": 1, "r": 2},
        {"a": 1, "l": 1, "r": 2},
        ["r"],
        [],
        id="two-way-union",
    ),
    pytest.param(None, {"a": 1}, {"a": 2}, {"a": 1}, [], ["a"], id="two-way-different-conflict"),
    pytest.param(
        None,
        {"n": {"x": 1}},
        {"n": {"x": 2, "y": 3}},
        {"n": {"x": 1, "y": 3}},
        ["n.y"],
        ["n.x"],
        id="two-way-nested",
    ),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("base", "live", "restored", "expected", "merged", "conflicts"), RULES)
def test_merge_rules(
    fmt: Format,
    base: Doc | None,
    live: Doc,
    restored: Doc,
    expected: Doc,
    merged: list[str],
    conflicts: list[str],
) -> None:
    result = fmt.run(base, live, restored)
    assert fmt.same(result.data, expected), f"got {result.data!r}, want {expected}"
    assert list(result.merged) == merged, "paths taken from restored"
    assert list(result.conflicts) == conflicts, "paths changed differently on both sides"
    assert result.clean is (not conflicts)


@pytest.mark.parametrize("fmt", FORMATS)
def test_field_order_is_live_then_restored_only(fmt: Format) -> None:
    base = {"a": 1, "b": 1}
    live = {"z": 0, "b": 1, "a": 1, "l": 1}
    restored = {"r2": 2, "a": 9, "b": 1, "r1": 1}
    result = fmt.run(base, live, restored)
    assert fmt.same(result.data, {"z": 0, "b": 1, "a": 9, "l": 1, "r2": 2, "r1": 1})


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_side_unchanged_returns_the_other_verbatim(fmt: Format) -> None:
    base, other = fmt.encode({"a": 1, "b": 2}), fmt.encode({"b": 3, "c": [1], "a": 1})
    assert fmt.merge(base, base, other).data == other, "restored's bytes, its order included"
    assert fmt.merge(base, other, base).data == other, "live's bytes"
    assert fmt.merge(None, other, other).data == other


# --- MongoDB documents: exact types and bytes -----------------------------------------------

EVERY_TYPE = SON(
    [
        ("_id", ObjectId("65f0c0ffee0000000000beef")),
        ("int32", 7),
        ("int64", Int64(7)),
        ("double", 7.0),
        ("negzero", -0.0),
        ("nan", float("nan")),
        ("dec", Decimal128(Decimal("7.10"))),
        ("when", datetime(2024, 5, 1, 12, 30, 45, 123000, tzinfo=UTC)),
        ("far_future", DatetimeMS(2**62)),
        ("uuid", Binary(b"\x01" * 16, 4)),
        ("bytes", b"\x00\xff"),
        ("old_binary", Binary(b"ab", 2)),
        ("nested_arrays", [[1, Int64(2)], [], [{"x": [3.5]}]]),
        ("regex", Regex("^a.*", "im")),
        ("code", Code("f()", {"x": 1})),
        ("ts", Timestamp(1, 2)),
        ("null", None),
        ("bool", False),
        ("min", MinKey()),
        ("max", MaxKey()),
        ("sub", SON([("b", 1), ("a", Int64(2))])),
    ]
)


def test_identical_documents_merge_to_the_same_bytes() -> None:
    raw = bson.encode(EVERY_TYPE)
    for base in (raw, None):
        result = merge_documents(base, raw, raw)
        assert result.data == raw
        assert result == MergeResult(raw), "nothing merged, nothing conflicted"


def test_untouched_fields_keep_their_exact_types() -> None:
    base = bson.encode(EVERY_TYPE)
    live = bson.encode(SON([*EVERY_TYPE.items(), ("live_note", "x")]))
    restored = bson.encode(SON([*EVERY_TYPE.items(), ("restored_note", Int64(1))]))
    result = merge_documents(base, live, restored)
    want = SON([*EVERY_TYPE.items(), ("live_note", "x"), ("restored_note", Int64(1))])
    assert result.data == bson.encode(want)
    options = CodecOptions(
        document_class=SON, tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO
    )
    decoded = bson.decode(result.data, codec_options=options)
    assert type(decoded["int64"]) is Int64 and type(decoded["int32"]) is int
    assert decoded["uuid"] == Binary(b"\x01" * 16, 4) and decoded["uuid"].subtype == 4
    assert decoded["when"] == EVERY_TYPE["when"] and decoded["when"].tzinfo is not None
    assert list(decoded["sub"]) == ["b", "a"], "sub-document field order kept"


def _element(kind: int, key: str, payload: bytes) -> bytes:
    return bytes([kind]) + key.encode() + b"\0" + payload


def _document(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def _string(text: str) -> bytes:
    return struct.pack("<i", len(text) + 1) + text.encode() + b"\0"


def test_deprecated_types_survive_byte_for_byte() -> None:
    """Undefined, symbol and DBPointer decode to None, str and DBRef: a decode would lose them."""
    legacy = [
        _element(0x06, "undef", b""),
        _element(0x0E, "sym", _string("s")),
        _element(0x0C, "ptr", _string("db.c") + b"\x01" * 12),
        _element(0x0B, "re", b"a\0mi\0"),  # flags unsorted: pymongo would write "im"
    ]
    base = _document(_element(0x10, "n", struct.pack("<i", 1)), *legacy)
    restored = _document(_element(0x10, "n", struct.pack("<i", 2)), *legacy)
    live = _document(_element(0x10, "n", struct.pack("<i", 1)), *legacy, _element(0x08, "f", b"\1"))
    want = _document(_element(0x10, "n", struct.pack("<i", 2)), *legacy, _element(0x08, "f", b"\1"))
    assert merge_documents(base, live, restored) == MergeResult(want, merged=("n",))


@pytest.mark.parametrize(
    ("base_id", "live_id", "restored_id"),
    [
        pytest.param(1, 1, 2, id="restored-differs"),
        pytest.param(1, 2, 2, id="base-differs"),
        pytest.param(None, 1, Int64(1), id="same-number-other-type"),
    ],
)
def test_id_must_not_change(base_id: Any, live_id: Any, restored_id: Any) -> None:
    base = None if base_id is None else bson.encode({"_id": base_id, "a": 1})
    with pytest.raises(MergeImpossible, match="another document"):
        merge_documents(base, bson.encode({"_id": live_id}), bson.encode({"_id": restored_id}))


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bson.encode({"a": 1})[:-1], id="truncated"),
        pytest.param(bson.encode({"a": 1}) + b"x", id="trailing-bytes"),
        pytest.param(bson.encode({"a": "x"}).replace(b"x", b"\xff"), id="bad-utf8"),
        pytest.param(
            _document(_element(0x10, "a", b"\0" * 4), _element(0x10, "a", b"\0" * 4)),
            id="duplicate-field",
        ),
    ],
)
@pytest.mark.parametrize("where", ["base", "live", "restored"])
def test_invalid_bson_is_impossible(bad: bytes, where: str) -> None:
    versions = {
        "base": bson.encode({"a": 1}),
        "live": bson.encode({"a": 1}),
        "restored": bson.encode({"a": 1}),
    }
    versions[where] = bad
    with pytest.raises(MergeImpossible) as info:
        merge_documents(**versions)
    assert isinstance(info.value, HindsightError)


def test_nesting_too_deep_to_merge_is_impossible() -> None:
    def nested(leaf: int) -> bytes:
        doc: Doc = {"a": leaf}
        for _ in range(600):
            doc = {"a": doc}
        return bson.encode(doc)

    with pytest.raises(MergeImpossible, match="nested too deeply"):
        merge_documents(nested(0), nested(1), nested(2))


# --- JSON files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("live", "want"),
    [
        pytest.param(
            b'{\n    "a": 1,\n    "b": 1\n}\n', b'{\n    "a": 2,\n    "b": 1\n}\n', id="four-spaces"
        ),
        pytest.param(
            b'{\n\t"a": 1,\n\t"b": 1\n}', b'{\n\t"a": 2,\n\t"b": 1\n}', id="tab-no-newline"
        ),
        pytest.param(b'{"a": 1, "b": 1}\n', b'{"a":2,"b":1}\n', id="one-line-compact"),
        pytest.param(b'{"a":1,"b":1}', b'{"a":2,"b":1}', id="compact"),
    ],
)
def test_json_output_follows_live_layout(live: bytes, want: bytes) -> None:
    base = b'{"a": 1, "b": 0}'
    assert merge_json(base, live, b'{"a": 2, "b": 0}').data == want


def test_json_keeps_non_ascii_unescaped() -> None:
    result = merge_json(b'{"a": 1}', b'{"a": 1, "b": 1}', '{"a": "Zürich 東京"}'.encode())
    assert result.data.decode() == '{"a":"Zürich 東京","b":1}'


def test_identical_json_files_merge_to_the_same_bytes() -> None:
    raw = b'{ "x" :1.50,"y": [1, 2] ,"z":"\\u00e9"}'
    assert merge_json(raw, raw, raw).data == raw
    assert merge_json(None, raw, raw).data == raw


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"{", id="not-json"),
        pytest.param(b"[1, 2]", id="array-at-top"),
        pytest.param(b'"text"', id="string-at-top"),
        pytest.param(b'{"a": "\xff"}', id="not-utf8"),
        pytest.param(b'{"a": 1, "a": 2}', id="duplicate-key"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="too-deep"),
    ],
)
@pytest.mark.parametrize("where", ["base", "live", "restored"])
def test_unmergeable_json_is_impossible(bad: bytes, where: str) -> None:
    versions = {"base": b'{"a": 1}', "live": b'{"a": 1}', "restored": b'{"a": 1}'}
    versions[where] = bad
    with pytest.raises(MergeImpossible, match=f"the {where} file"):
        merge_json(**versions)


# --- properties ---------------------------------------------------------------------------------

# Valid MongoDB field names other than _id (no NUL or dot, no leading $); a small alphabet so
# that independently drawn documents share fields.
field_names = st.builds(
    "".join, st.tuples(st.sampled_from("abzé東 "), st.text("ab$é東 ", max_size=2))
)
bson_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(-(2**63), 2**63 - 1).map(Int64),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.binary(max_size=6),
    st.binary(min_size=16, max_size=16).map(lambda b: Binary(b, 4)),
    st.binary(min_size=12, max_size=12).map(ObjectId),
    st.decimals(-(10**6), 10**6, places=2).map(Decimal128),
    st.datetimes(timezones=st.just(UTC)),
)
json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=3),
        max_leaves=4,
    )


PROPERTY_FORMATS = [
    pytest.param(Format(merge_documents, bson.encode), _values(bson_leaves), id="bson"),
    pytest.param(Format(merge_json, _encode_json), _values(json_leaves), id="json"),
]


def _apply(doc: Doc, changes: dict[str, Any]) -> Doc:
    out = dict(doc)
    for key, value in changes.items():
        if value is GONE:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(("fmt", "values"), PROPERTY_FORMATS)
@given(data=st.data())
def test_merge_laws(fmt: Format, values: st.SearchStrategy[Any], data: st.DataObject) -> None:
    documents = st.dictionaries(field_names, values, max_size=5)
    base, x, y = (fmt.encode(data.draw(documents)) for _ in range(3))
    assert fmt.merge(base, x, x).data == x, "same on both sides"
    assert fmt.merge(base, base, x).data == x, "restored changed alone"
    assert fmt.merge(base, x, base).data == x, "live changed alone"
    assert fmt.merge(None, x, x).clean
    forward, backward = fmt.merge(base, x, y), fmt.merge(base, y, x)
    assert set(forward.conflicts) == set(backward.conflicts), "a conflict has no side"


@pytest.mark.parametrize(("fmt", "values"), PROPERTY_FORMATS)
@given(data=st.data())
def test_changes_to_different_fields_all_apply(
    fmt: Format, values: st.SearchStrategy[Any], data: st.DataObject
) -> None:
    base = data.draw(st.dictionaries(field_names, values, max_size=5), label="base")
    keys = st.sampled_from(sorted(base)) | field_names if base else field_names
    changes = st.dictionaries(keys, st.just(GONE) | values, max_size=4)
    live_changes = data.draw(changes, label="live changes")
    restored_changes = {k: v for k, v in data.draw(changes).items() if k not in live_changes}
    live, restored = _apply(base, live_changes), _apply(base, restored_changes)
    result = fmt.run(base, live, restored)
    assert fmt.same(result.data, _apply(live, restored_changes))
    assert result.clean
    assert {path.split(".")[0] for path in result.merged} <= set(restored_changes)
