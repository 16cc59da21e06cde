"""Coalescing of raw watcher events into one hint per path: pure logic, no threads, no clock.

``capture.watcher`` feeds every raw event in with the time it was seen and asks what is due;
a path is due once no event has arrived for ``settle_s``, or ``max_wait_s`` after its first
event, whichever comes first. Events for one path fold together: a move sticks (a second move
source turns into a deletion of it), otherwise the latest kind wins. What a hint kind means is
documented in ``capture.watcher``; the hint type itself is built by the factory passed in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

__all__ = ["Coalescer", "HintKind"]

HintKind = Literal["changed", "deleted", "moved", "rescan"]

H = TypeVar("H")


@dataclass(slots=True)
class _Pending:
    kind: HintKind
    old_relpath: str | None
    first_seen: float
    last_seen: float


_Key = tuple[str, str]


class Coalescer(Generic[H]):
    """Folds raw events per path and releases each once it settles or waited long enough.

    Released hints are built with ``make_hint(root, relpath, kind, old_relpath, first_seen)``
    and returned in order of first event. ``_pending`` is kept in order of last event (an
    update moves the entry to the end), so the settled entries are a prefix of it;
    ``_deadlines`` is in order of first event.
    """

    def __init__(
        self,
        settle_s: float,
        max_wait_s: float,
        make_hint: Callable[[str, str, HintKind, str | None, float], H],
    ) -> None:
        self.settle_s, self.max_wait_s = settle_s, max_wait_s
        self._make_hint = make_hint
        self._pending: dict[_Key, _Pending] = {}
        self._deadlines: deque[tuple[float, _Key, _Pending]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, root: str, relpath: str, kind: HintKind, old: str | None, at: float) -> None:
        """Fold one raw event in: a move sticks, otherwise the latest kind wins."""
        key = (root, relpath)
        pending = self._pending.pop(key, None)
        if pending is None:
            pending = _Pending(kind, old, at, at)
            self._deadlines.append((at + self.max_wait_s, key, pending))
        elif pending.kind == "moved":
            if kind == "moved" and old is not None and old != pending.old_relpath:
                self.add(root, old, "deleted", None, at)  # a second source must not be lost
            pending.last_seen = at
        else:
            pending.kind, pending.old_relpath, pending.last_seen = kind, old, at
        self._pending[key] = pending

    def pop_due(self, now: float) -> list[H]:
        """Remove and return the hints that settled or reached their maximum wait."""
        keys: list[_Key] = []
        for key, pending in self._pending.items():
            if pending.last_seen + self.settle_s > now:
                break
            keys.append(key)
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key, pending = self._deadlines.popleft()
            if self._pending.get(key) is pending:
                keys.append(key)
        return self._pop(dict.fromkeys(keys))

    def pop_all(self) -> list[H]:
        """Remove and return every pending hint, settled or not."""
        hints = self._pop(list(self._pending))
        self._deadlines.clear()
        return hints

    def next_due(self) -> float | None:
        """When the earliest pending hint becomes due, or None when nothing is pending."""
        while (
            self._deadlines
            and self._pending.get(self._deadlines[0][1]) is not (self._deadlines[0][2])
        ):
            self._deadlines.popleft()
        due = [self._deadlines[0][0]] if self._deadlines else []
        first = next(iter(self._pending.values()), None)
        if first is not None:
            due.append(first.last_seen + self.settle_s)
        return min(due, default=None)

    def clear(self) -> int:
        """Forget everything pending; return how many paths were dropped."""
        count = len(self._pending)
        self._pending.clear()
        self._deadlines.clear()
        return count

    def _pop(self, keys: Sequence[_Key] | dict[_Key, None]) -> list[H]:
        # A stable sort on first_seen: the same order as sorting the built hints by it.
        popped = sorted(((key, self._pending.pop(key)) for key in keys), key=_first_seen)
        return [
            self._make_hint(root, relpath, p.kind, p.old_relpath, p.first_seen)
            for (root, relpath), p in popped
        ]


def _first_seen(item: tuple[_Key, _Pending]) -> float:
    return item[1].first_seen
