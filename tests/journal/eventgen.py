"""Event factories and hypothesis strategies shared by journal tests and benchmarks."""

from __future__ import annotations

import json
import random

import bson
from hypothesis import strategies as st

from journal.events import ChangeEvent, FileImage, Op, Source

_TS = st.integers(min_value=1, max_value=2**62)
_TEXT = st.text(max_size=40)

file_images = st.builds(
    FileImage,
    blob=st.text(alphabet="0123456789abcdef", max_size=64),
    size=st.integers(0, 2**40),
    sha256=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    mode=st.integers(0, 0o177777),
    mtime_ns=st.integers(0, 2**62),
    link_target=st.none() | _TEXT,
)

events = st.builds(
    ChangeEvent,
    source=st.sampled_from(Source),
    namespace=_TEXT,
    key=_TEXT,
    op=st.sampled_from(Op),
    source_ts=_TS,
    after=st.none() | st.binary(min_size=1, max_size=300) | file_images,
    position=st.binary(max_size=40),
    txn=_TEXT,
    meta=st.none() | st.dictionaries(_TEXT, _TEXT, min_size=1, max_size=3),
    capture_ts=_TS,
)


def conversation(i: int, rng: random.Random | None = None) -> ChangeEvent:
    """A MongoDB insert shaped like a chatbot conversation document (~300-600 bytes)."""
    rng = rng or random.Random(i)
    words = ["hola", "precio", "cotizacion", "envio", "gracias", "producto", "pedido", "ayuda"]
    text = " ".join(
        rng.choice(words) + str(rng.randint(0, 999)) for _ in range(rng.randint(12, 40))
    )
    doc = {
        "_id": f"conv-{i:08d}",
        "user_id": f"u{rng.randint(1, 50_000)}",
        "channel": rng.choice(["whatsapp", "web", "telegram"]),
        "messages": [{"role": "user", "text": text}, {"role": "assistant", "text": "ok"}],
        "ts": 1_764_000_000 + i,
    }
    return ChangeEvent(
        Source.MONGODB,
        "chatbot.conversaciones",
        json.dumps({"$oid": f"{i:024x}"}),
        Op.INSERT,
        1_764_000_000_000_000 + i * 1000,
        after=bson.encode(doc),
        position=f"resume-{i}".encode(),
    )
