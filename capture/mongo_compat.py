"""Where the nx-27017 test server differs from MongoDB, and how capture copes: only here.

nx-27017 (a MongoDB wire-protocol server on SQLite, used by the test suite because no MongoDB
binary can be installed where the tests run) is detected by ``serverStatus.process``; against
a real ``mongod`` or ``mongos`` nothing in this module changes any behaviour. Each piece
names the deviation it handles:

- ``db.watch()`` and ``client.watch()`` never yield -> capture watches each
  collection on its own (capture then detects new, dropped and renamed collections by
  reconciling the collection list, which it does against every server anyway);
- ``$changeStream`` rejects or ignores options of MongoDB 6+ -> ``stream_options`` drops
  ``showExpandedEvents``;
- ``fullDocument`` leaks the server's internal encodings (ObjectId, binary data and datetimes
  as marker sub-documents, at any depth) while ``find()`` returns correct types ->
  ``repair`` decodes them back, so the journal holds what ``find()`` would return;
- ``documentKey._id`` is stringified unless it is a str or ObjectId -> ``repair`` takes the
  ``_id`` from the (repaired) ``fullDocument``, which every nx event carries;
- deletes carry a ``fullDocument`` (MongoDB's never do) -> ``repair`` removes it.

Deviations that need no code: ``clusterTime`` as a datetime (the normaliser prefers
``wallTime``, which nx sends); ``replace_one`` reported as ``update`` with no
``updateDescription`` (the after-image is the whole document either way); resume tokens
``{'_data': 'nx:N'}`` (opaque to capture).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import Any

import bson
from bson import ObjectId
from bson.binary import Binary
from bson.raw_bson import RawBSONDocument
from pymongo.database import Database
from pymongo.errors import OperationFailure

__all__ = ["is_nx_27017", "repair", "stream_options"]

_OBJECTID = "__neosqlite_objectid__"
_BINARY = "__neosqlite_binary__"
_DATE = "$date"
_CODEC: bson.CodecOptions[dict[str, Any]] = bson.CodecOptions(tz_aware=False)


def is_nx_27017(admin: Database[Any]) -> bool:
    """Whether the server behind ``admin`` is nx-27017 rather than a real MongoDB."""
    try:
        process = admin.command("serverStatus").get("process", "")
    except OperationFailure:  # a capture user without serverStatus rights: not nx-27017
        return False
    return isinstance(process, str) and process.startswith("nx_")


def stream_options(options: dict[str, Any]) -> dict[str, Any]:
    """``watch()`` options nx-27017 accepts: without ``show_expanded_events``."""
    return {k: v for k, v in options.items() if k != "show_expanded_events"}


def repair(change: RawBSONDocument) -> Mapping[str, Any]:
    """An nx-27017 change event as a real MongoDB would send it (see the module docstring)."""
    event = dict(bson.decode(change.raw, codec_options=_RAW))
    if event.get("operationType") == "delete":
        full = event.pop("fullDocument", None)
        if isinstance(full, RawBSONDocument) and "_id" in full:
            event["documentKey"] = {"_id": _fix(bson.decode(full.raw, codec_options=_CODEC)["_id"])}
        return event
    full = event.get("fullDocument")
    if isinstance(full, RawBSONDocument):
        fixed = _fix(bson.decode(full.raw, codec_options=_CODEC))
        event["fullDocument"] = RawBSONDocument(_encode_in_order(fixed))
        if "_id" in fixed:
            event["documentKey"] = {"_id": fixed["_id"]}
    return event


def _encode_in_order(document: Mapping[str, Any]) -> bytes:
    """BSON of ``document`` in its own field order: ``bson.encode`` moves a top-level ``_id``
    first, but nx-27017 keeps a replacement's order (``find()`` returns ``_id`` last), so the
    document is encoded one level down and taken back out of its wrapper."""
    wrapped = bson.encode({"d": document})
    return wrapped[WRAPPER_HEAD:-1]  # int32 size, type 0x03, "d\0" ... the wrapper's 0x00


WRAPPER_HEAD = 4 + 1 + 2

_RAW: bson.CodecOptions[RawBSONDocument] = bson.CodecOptions(document_class=RawBSONDocument)


def _fix(value: Any) -> Any:
    """``value`` with nx's marker sub-documents turned back into BSON types, at any depth."""
    if isinstance(value, list):
        return [_fix(v) for v in value]
    if not isinstance(value, dict):
        return value
    if value.get(_OBJECTID) is True and isinstance(value.get("id"), str):
        return ObjectId(value["id"])
    if value.get(_BINARY) is True and isinstance(value.get("data"), str):
        return Binary(base64.b64decode(value["data"]), int(value.get("subtype", 0)))
    if len(value) == 1 and isinstance(value.get(_DATE), str):
        return datetime.datetime.fromisoformat(value[_DATE])
    return {k: _fix(v) for k, v in value.items()}
