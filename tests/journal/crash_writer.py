"""Child process of the crash test: appends batches forever and acknowledges each one.

Run as ``python crash_writer.py REPO KEY_HEX|none SEED``. After every ``append`` returns it
prints the batch's last sequence number, so the parent knows exactly what was acknowledged
when it kills this process. Event content is a pure function of the sequence number
(``event_for``), so the parent can recompute what every acknowledged event must hold.

Deliberately imports nothing heavy (no hypothesis): it is started twenty times per test.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from journal.events import ChangeEvent, Op, Source
from journal.keys import MasterSecret
from journal.log import Durability
from journal.repository import Repository

SEGMENT_MAX_BYTES = 64 * 1024  # small, so some kills land in the middle of sealing
MAX_BATCH = 300
_WORDS = ("hola", "precio", "cotizacion", "envio", "gracias", "producto", "pedido", "ayuda")


def key_for(seq: int) -> str:
    """The document key of the event appended as ``seq``; cheap, unlike ``event_for``."""
    return f"conv-{seq:08d}"


def event_for(seq: int) -> ChangeEvent:
    """The event the writer appends as sequence number ``seq`` (a chatbot conversation)."""
    rng = random.Random(seq)
    text = " ".join(f"{rng.choice(_WORDS)}{rng.randrange(1000)}" for _ in range(rng.randint(5, 40)))
    doc = {"_id": key_for(seq), "channel": rng.choice(["whatsapp", "web"]), "text": text}
    return ChangeEvent(
        Source.MONGODB,
        "chatbot.conversaciones",
        key_for(seq),
        Op.INSERT,
        1_764_000_000_000_000 + seq * 1000,
        after=json.dumps(doc).encode(),
        position=f"resume-{seq}".encode(),
    )


def secret_from_arg(arg: str) -> MasterSecret | None:
    """``none`` for a plain repository, else the master key in hex."""
    return None if arg == "none" else MasterSecret(key=bytes.fromhex(arg), origin="crash test")


def main(argv: list[str]) -> None:
    """Append until killed; print each acknowledged last seq on its own line."""
    path, key, seed = argv
    rng = random.Random(int(seed))
    repo = Repository.open(
        Path(path),
        secret_from_arg(key),
        writable=True,
        durability=Durability.BATCH,
        segment_max_bytes=SEGMENT_MAX_BYTES,
    )
    while True:
        first = repo.log.next_seq
        count = rng.randint(1, MAX_BATCH)
        got = repo.log.append([event_for(s) for s in range(first, first + count)])
        if got.first != first or got.last != first + count - 1:
            sys.exit(f"append was given {got}, expected {first}..{first + count - 1}")
        print(got.last, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
