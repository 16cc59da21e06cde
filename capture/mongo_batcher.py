"""Batches change events for the journal without ever splitting a transaction.

Change streams deliver the events of one transaction (same ``lsid`` + ``txnNumber``) one
after another, and all of them at once: a transaction becomes visible only when it commits.
The batcher appends in batches (one fsync for many events) and holds back a trailing run of
one transaction until the next event shows the run is over, or the stream runs dry (which it
cannot do mid-transaction). The last event of every transaction run is marked ``txn_end``
so a reader can tell a whole transaction from the start of one cut off by a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from journal.events import ChangeEvent
from journal.meta import META_TXN_END
from journal.protocols import EventSink

__all__ = ["DEFAULT_BATCH_EVENTS", "DEFAULT_FLUSH_S", "META_TXN_END", "Batcher"]

DEFAULT_BATCH_EVENTS = 2000
DEFAULT_FLUSH_S = 0.05


class Batcher:
    """Collects events and appends them to ``sink``; ``on_append`` sees each appended batch."""

    def __init__(
        self,
        sink: EventSink,
        on_append: Callable[[Sequence[ChangeEvent]], None],
        *,
        batch_events: int = DEFAULT_BATCH_EVENTS,
        flush_s: float = DEFAULT_FLUSH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink, self.on_append = sink, on_append
        self.batch_events, self.flush_s, self.clock = batch_events, flush_s, clock
        self.pending: list[ChangeEvent] = []
        self._first_at = 0.0

    def add(self, event: ChangeEvent) -> None:
        """Queue one event; appends when the batch is full or old enough."""
        if not self.pending:
            self._first_at = self.clock()
        self.pending.append(event)
        if len(self.pending) >= self.batch_events or self.clock() - self._first_at >= self.flush_s:
            self.flush(stream_dry=False)

    def flush(self, *, stream_dry: bool) -> int:
        """Append what is queued; unless ``stream_dry``, keep back an unfinished transaction.

        Returns the number of events appended.
        """
        cut = len(self.pending) if stream_dry else _complete_prefix(self.pending)
        if cut == 0:
            return 0
        batch = _mark_transaction_ends(self.pending[:cut])
        self.sink.append(batch)
        del self.pending[:cut]
        self._first_at = self.clock()
        self.on_append(batch)
        return len(batch)

    def discard(self) -> None:
        """Forget what is queued (the stream resumes from the last appended event)."""
        self.pending.clear()


def _complete_prefix(events: Sequence[ChangeEvent]) -> int:
    """How many leading events are not part of a transaction run still going on at the end."""
    last = events[-1].txn if events else ""
    if not last:
        return len(events)
    cut = len(events)
    while cut > 0 and events[cut - 1].txn == last:
        cut -= 1
    return cut


def _mark_transaction_ends(events: list[ChangeEvent]) -> list[ChangeEvent]:
    """``events`` where the last event of each (complete) transaction run carries ``txn_end``."""
    out = list(events)
    for i, event in enumerate(out):
        following = out[i + 1].txn if i + 1 < len(out) else None
        if event.txn and event.txn != following:
            out[i] = event._replace(meta={**(event.meta or {}), META_TXN_END: "1"})
    return out
