"""Canonical extended JSON: the one text form of a BSON value the repository format uses.

A MongoDB document's journal key is the canonical extended JSON of its ``_id``, so ``1``,
``Int64(1)``, ``1.0`` and ``"1"`` are four different keys, as they are four different
documents to MongoDB. Capture writes keys with it and restore looks documents up by it.
"""

from __future__ import annotations

from typing import Any

from bson import json_util

__all__ = ["canonical_key"]

_JSON = json_util.CANONICAL_JSON_OPTIONS


def canonical_key(value: Any) -> str:
    """``value`` as canonical extended JSON: distinct for every type and value."""
    return str(json_util.dumps(value, json_options=_JSON))
