"""``capture.mongo_compat.repair``: nx-27017 change events made to look like MongoDB's."""

from __future__ import annotations

import bson
from bson.raw_bson import RawBSONDocument

from capture.mongo_compat import repair


def change(full: dict[str, object]) -> RawBSONDocument:
    return RawBSONDocument(
        bson.encode(
            {
                "operationType": "update",
                "ns": {"db": "d", "coll": "c"},
                "documentKey": {"_id": 1},
                "fullDocument": full,
            }
        )
    )


def test_the_full_document_keeps_its_field_order_with_id_anywhere() -> None:
    """nx-27017 stores a replacement without ``_id`` with ``_id`` last, and find() returns
    it so: the journal must hold the same bytes (bson.encode would move ``_id`` first)."""
    for order in (["y", "_id", "b"], ["y", "b", "_id"], ["_id", "y", "b"]):
        full = {name: {"_id": 1, "y": 1, "b": "two"}[name] for name in order}
        repaired = repair(change(full))["fullDocument"]
        assert list(bson.decode(repaired.raw).items()) == list(full.items())
    nested = {"a": {"z": 1, "_id": 2}, "_id": 3}
    assert list(bson.decode(repair(change(nested))["fullDocument"].raw)) == ["a", "_id"]
