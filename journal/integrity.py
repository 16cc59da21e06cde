"""What verification finds: one ``Problem`` per damaged place, located precisely."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Problem"]


class Problem(NamedTuple):
    """A damaged or inconsistent place in the repository.

    ``path`` is relative to the repository root; ``offset`` is the byte offset of the bad
    frame, or None when the problem concerns the whole file (a hash mismatch, a missing file).
    """

    path: str
    offset: int | None
    reason: str

    def __str__(self) -> str:
        where = self.path if self.offset is None else f"{self.path} @ {self.offset}"
        return f"{where}: {self.reason}"
