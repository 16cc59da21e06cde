"""Field-level three-way merge of MongoDB documents (raw BSON) and JSON files.

A merge of (base, live, restored) compares each field of *live* (what exists now) and
*restored* (what the restore brings back) with *base* (their common ancestor):

- equal on both sides, or changed on the live side only -> live's value;
- changed on the restored side only -> restored's value (reported in ``merged``);
- changed on both sides, differently -> a *conflict*: reported in ``conflicts``, live's value
  is kept. Both sub-documents (objects) -> merged field by field, recursively.

"Changed" includes added and removed: a field removed on one side and untouched on the other
is removed; removed on one side and changed on the other is a conflict. Arrays and every
other value are compared whole, by exact type and value (Int32 1, Int64 1, double 1.0 and
true all differ). Paths are dotted: ``address.city``. ``base=None`` (no ancestor known) is
an empty base, which makes the merge two-way: fields equal on both sides are kept, fields on
one side only are kept or added, differing fields are conflicts (live kept).

Field order is live's, followed by the fields only restored has, in restored's order. A merge
whose result is one side (it alone changed, or both agree) returns that side's bytes as given.

Which base a restore passes. The restored version is the item at the restore time T, so
passing the version at T as the base too merges (V(T), live, V(T)) into live: the merge
would restore nothing. A base must be *later* than T; the merge then undoes what
changed between T and the base and keeps what changed after it (as ``git revert`` does):

- **undo a span** (e.g. a bad import between T and T2): base = the version at T2, restored =
  the version at T, live = now. Changes made in the span are reverted, later changes are
  kept, fields touched in the span and again later are conflicts. base = now is a plain
  overwrite, base = V(T) is a plain skip; times in between interpolate.
- **no ancestor chosen**: base = None. Deleted or missing fields come back, live's extra
  fields stay, every field whose values differ is a conflict that keeps live's value.

MongoDB documents are merged element by element on the raw bytes (never decoded into Python
values and re-encoded), so types, binary subtypes, datetimes and field order survive
exactly; ``_id`` must be the same in every version given, or the merge is impossible. JSON
files are decoded with :mod:`json`, so numbers and escapes come out as :func:`json.dumps`
writes them.
"""

from __future__ import annotations

import enum
import json
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.errors import BSONError

from journal.errors import HindsightError

__all__ = ["MergeImpossible", "MergeResult", "merge_documents", "merge_json"]


class MergeImpossible(HindsightError):
    """The versions cannot be merged (not parseable, not objects, or different ``_id``s).

    Nothing was merged; the caller falls back to another conflict strategy.
    """


@dataclass(frozen=True)
class MergeResult:
    """A merged document or file and what the merge did.

    ``merged`` lists the paths whose value was taken from the restored side (set, changed or
    removed); ``conflicts`` the paths changed differently on both sides, where live was kept.
    """

    data: bytes
    merged: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        """True if no field conflicted."""
        return not self.conflicts


def merge_documents(base: bytes | None, live: bytes, restored: bytes) -> MergeResult:
    """Merge raw BSON documents ``live`` and ``restored`` against ``base``; see the module doc."""
    versions = {"live": live, "restored": restored} | ({} if base is None else {"base": base})
    ids = {name: _bson_fields(name, raw).get("_id") for name, raw in versions.items()}
    if other := [name for name, value in ids.items() if value != ids["live"]]:
        raise MergeImpossible(f"the {' and '.join(other)} _id is not live's: another document")
    merge = _Merge(_BSON_MODEL)
    old = _MISSING if base is None else _Element(_DOCUMENT, base)
    result = merge.run(old, _Element(_DOCUMENT, live), _Element(_DOCUMENT, restored))
    return merge.result(result.payload)


def merge_json(base: bytes | None, live: bytes, restored: bytes) -> MergeResult:
    """Merge JSON files (UTF-8, top level an object) ``live`` and ``restored`` against ``base``.

    The output keeps live's layout: indented with live's indent unit if live spans several
    lines, else on one line with compact separators; it ends with a newline if live did.
    When one side equals the base, the other side's bytes are returned unchanged.
    """
    text = _json_text("live", live)
    values = {
        name: _json_object(name, raw) for name, raw in (("live", live), ("restored", restored))
    }
    merge = _Merge(_JSON_MODEL)
    old = _MISSING if base is None else _json_object("base", base)
    result = merge.run(old, values["live"], values["restored"])
    if result is values["live"]:
        return merge.result(live)
    if result is values["restored"]:
        return merge.result(restored)
    return merge.result(_dump_json(result, text))


# --- the format-independent merge -----------------------------------------------------------

V = TypeVar("V")


class _Missing(enum.Enum):
    """The value of a field a version does not have."""

    MISSING = enum.auto()


_MISSING = _Missing.MISSING


class _Model(NamedTuple, Generic[V]):
    """How the merge sees one format's values."""

    fields: Callable[[V], dict[str, V] | None]  # an object's fields, None for other values
    document: Callable[[dict[str, V]], V]  # the object with these fields
    same: Callable[[V, V], bool]  # exactly equal, type included


@dataclass
class _Merge(Generic[V]):
    """One merge: walks the three versions and collects the merged and conflicting paths."""

    model: _Model[V]
    merged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    def run(self, base: V | _Missing, live: V, restored: V) -> V:
        """The merge of two top-level objects (itself one), collecting the paths on the way."""
        try:
            merged = self.value("", base, live, restored)
        except RecursionError as exc:
            raise MergeImpossible("the versions are nested too deeply to merge") from exc
        assert not isinstance(merged, _Missing), "a merge of present values is present"
        return merged

    def result(self, data: bytes) -> MergeResult:
        return MergeResult(data, tuple(self.merged), tuple(self.conflicts))

    def value(
        self, path: str, base: V | _Missing, live: V | _Missing, restored: V | _Missing
    ) -> V | _Missing:
        """The merged value at ``path`` (_MISSING: the field is absent from the result)."""
        if self._same(live, restored) or self._same(restored, base):
            return live
        if self._same(live, base):
            self._report(path, live, restored)
            return restored
        live_fields, restored_fields = self._fields(live), self._fields(restored)
        if live_fields is None or restored_fields is None:
            self.conflicts.append(path)
            return live
        base_fields = self._fields(base) or {}
        return self.model.document(
            self._merge_fields(path, base_fields, live_fields, restored_fields)
        )

    def _merge_fields(
        self, path: str, base: dict[str, V], live: dict[str, V], restored: dict[str, V]
    ) -> dict[str, V]:
        out: dict[str, V] = {}
        for key in _union(live, restored):
            value = self.value(
                _join(path, key),
                base.get(key, _MISSING),
                live.get(key, _MISSING),
                restored.get(key, _MISSING),
            )
            if not isinstance(value, _Missing):
                out[key] = value
        return out

    def _report(self, path: str, live: V | _Missing, restored: V | _Missing) -> None:
        """Record as merged the paths where ``restored`` (which the merge takes) differs."""
        live_fields, restored_fields = self._fields(live), self._fields(restored)
        if live_fields is None or restored_fields is None:
            self.merged.append(path)
            return
        for key in _union(live_fields, restored_fields):
            old, new = live_fields.get(key, _MISSING), restored_fields.get(key, _MISSING)
            if not self._same(old, new):
                self._report(_join(path, key), old, new)

    def _same(self, a: V | _Missing, b: V | _Missing) -> bool:
        if isinstance(a, _Missing) or isinstance(b, _Missing):
            return a is b
        return self.model.same(a, b)

    def _fields(self, value: V | _Missing) -> dict[str, V] | None:
        return None if isinstance(value, _Missing) else self.model.fields(value)


def _union(live: Mapping[str, Any], restored: Mapping[str, Any]) -> list[str]:
    """Live's keys in order, then those only restored has, in its order."""
    return [*live, *(key for key in restored if key not in live)]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- BSON: elements as raw bytes ------------------------------------------------------------

_INT32 = struct.Struct("<i")
_DOCUMENT, _REGEX, _BINARY, _DB_POINTER = 0x03, 0x0B, 0x05, 0x0C
# Value sizes by BSON type: fixed, or an int32 length prefix (string-like: the length excludes
# the prefix; document-like: includes it).
_FIXED_SIZE = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8}
_FIXED_SIZE |= {0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}
_STRING_LIKE = {0x02, 0x0D, 0x0E}
_DOCUMENT_LIKE = {_DOCUMENT, 0x04, 0x0F}
# Full validation only: datetimes stay integers, so any year decodes.
_VALIDATE: CodecOptions[dict[str, Any]] = CodecOptions(
    datetime_conversion=DatetimeConversion.DATETIME_MS
)


class _Element(NamedTuple):
    """A BSON value as its type byte and its encoded bytes: equal iff type and value are."""

    kind: int
    payload: bytes


def _bson_fields(name: str, raw: bytes) -> dict[str, _Element]:
    """The top-level fields of ``raw`` after checking that it is one valid BSON document."""
    try:
        bson.decode(raw, codec_options=_VALIDATE)
    except BSONError as exc:
        raise MergeImpossible(f"the {name} version is not a valid BSON document: {exc}") from exc
    return _element_fields(raw)


def _element_fields(document: bytes) -> dict[str, _Element]:
    """The fields of a document already validated by :func:`bson.decode`, in order."""
    fields: dict[str, _Element] = {}
    at, end = 4, len(document) - 1
    while at < end:
        key_end = document.index(b"\0", at + 1)
        key = document[at + 1 : key_end].decode()
        start = key_end + 1
        stop = start + _value_size(document[at], document, start)
        if key in fields:
            raise MergeImpossible(f"field {key!r} appears twice in a BSON document")
        fields[key] = _Element(document[at], document[start:stop])
        at = stop
    return fields


def _value_size(kind: int, document: bytes, at: int) -> int:
    if kind in _FIXED_SIZE:
        return _FIXED_SIZE[kind]
    if kind == _REGEX:  # pattern and options, two C strings
        return document.index(b"\0", document.index(b"\0", at) + 1) + 1 - at
    (length,) = _INT32.unpack_from(document, at)
    if kind in _STRING_LIKE:
        return 4 + length
    if kind in _DOCUMENT_LIKE:
        return length
    if kind == _BINARY:
        return 5 + length
    if kind == _DB_POINTER:
        return 4 + length + 12
    raise MergeImpossible(f"unknown BSON type 0x{kind:02x}")


def _bson_document(fields: dict[str, _Element]) -> _Element:
    body = b"".join(bytes([e.kind]) + k.encode() + b"\0" + e.payload for k, e in fields.items())
    return _Element(_DOCUMENT, _INT32.pack(len(body) + 5) + body + b"\0")


_BSON_MODEL: _Model[_Element] = _Model(
    fields=lambda e: _element_fields(e.payload) if e.kind == _DOCUMENT else None,
    document=_bson_document,
    same=lambda a, b: a == b,
)


# --- JSON -------------------------------------------------------------------------------------


def _json_text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MergeImpossible(f"the {name} file is not UTF-8: {exc}") from exc


def _json_object(name: str, raw: bytes) -> dict[str, Any]:
    """Parse one version; MergeImpossible unless it is a JSON object with unique keys."""
    try:
        value = json.loads(_json_text(name, raw), object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as exc:
        raise MergeImpossible(f"the {name} file is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise MergeImpossible(f"the {name} file is JSON but not an object at the top level")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("an object has the same key twice")
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _dump_json(value: Any, live_text: str) -> bytes:
    body = live_text.strip()
    if "\n" not in body:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        unit = re.search(r"^([ \t]*)\S", body.split("\n", 1)[1], re.MULTILINE)
        text = json.dumps(value, ensure_ascii=False, indent=unit.group(1) if unit else "")
    return (text + ("\n" if live_text.endswith("\n") else "")).encode()


_JSON_MODEL: _Model[Any] = _Model(
    fields=lambda value: value if isinstance(value, dict) else None,
    document=lambda fields: fields,
    same=lambda a, b: a is b or _canonical(a) == _canonical(b),
)
