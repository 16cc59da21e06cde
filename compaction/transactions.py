"""Whole transactions only: readers of the journal never see half of one.

Capture appends a transaction's events together and marks the last with ``txn_end``. A crash
inside an append longer than one frame can leave a transaction's first events without its
end; the capture re-reads and appends it whole after restarting. So a reader holds a
transaction's events until its ``txn_end`` and drops a transaction that another event
interrupts: that one is unfinished (see FORMAT.md, "MongoDB events").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from journal.events import ChangeEvent
from journal.meta import META_TXN_END

__all__ = ["WholeTransactions"]


class WholeTransactions:
    """Filters a stream of events (in seq order) to complete transactions.

    After the stream ends, ``held_from`` is the seq of the first event still held back (a
    transaction whose end is not in the journal yet), or None.
    """

    def __init__(self) -> None:
        self._held: list[ChangeEvent] = []
        self.dropped = 0

    @property
    def held_from(self) -> int | None:
        """First seq of a transaction still waiting for its end."""
        return self._held[0].seq if self._held else None

    def feed(self, events: Iterable[ChangeEvent]) -> Iterator[ChangeEvent]:
        """The events of ``events`` that may be applied, in order."""
        for event in events:
            if self._held and event.txn != self._held[0].txn:
                self.dropped += len(self._held)  # interrupted: never finished
                self._held = []
            if not event.txn:
                yield event
            elif (event.meta or {}).get(META_TXN_END):
                yield from self._held
                yield event
                self._held = []
            else:
                self._held.append(event)
