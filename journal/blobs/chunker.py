"""Content-defined chunking of a stream through a fixed-size window, so memory stays bounded.

FastCDC decides each cut from the bytes between the chunk's start and ``start + max_size``
only. Chunking a window of the stream therefore gives the same cuts as chunking the whole
stream for every chunk that starts at least ``max_size`` bytes before the window's end; the
rest (less than ``max_size`` bytes) is carried to the front of the next window. At end of
stream every remaining cut is final. The result is identical to ``fastcdc(whole_data)``
whatever the window size, which is what makes an edit inside a large file re-store only the
chunks around the edit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastcdc import fastcdc

from journal.errors import ConfigError
from journal.protocols import Readable

__all__ = [
    "DEFAULT_AVG_CHUNK",
    "DEFAULT_MAX_CHUNK",
    "DEFAULT_MIN_CHUNK",
    "DEFAULT_WINDOW",
    "Chunker",
    "Readable",
]

DEFAULT_MIN_CHUNK = 16 * 1024
DEFAULT_AVG_CHUNK = 64 * 1024
DEFAULT_MAX_CHUNK = 256 * 1024
DEFAULT_WINDOW = 8 * 1024 * 1024
READ_SIZE = 1024 * 1024
# The ranges fastcdc accepts (it asserts on anything else).
_MIN_RANGE = (64, 64 * 1024 * 1024)
_AVG_RANGE = (256, 256 * 1024 * 1024)
_MAX_RANGE = (1024, 1024 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class Chunker:
    """FastCDC parameters plus the window that bounds memory (about ``window`` + 1 MiB)."""

    min_size: int = DEFAULT_MIN_CHUNK
    avg_size: int = DEFAULT_AVG_CHUNK
    max_size: int = DEFAULT_MAX_CHUNK
    window: int = DEFAULT_WINDOW

    def __post_init__(self) -> None:
        for name, value, (lo, hi) in (
            ("min_chunk", self.min_size, _MIN_RANGE),
            ("avg_chunk", self.avg_size, _AVG_RANGE),
            ("max_chunk", self.max_size, _MAX_RANGE),
        ):
            if not lo <= value <= hi:
                raise ConfigError(f"{name}={value} is outside fastcdc's range [{lo}, {hi}]")
        if not self.min_size <= self.avg_size <= self.max_size:
            raise ConfigError("chunk sizes must satisfy min_chunk <= avg_chunk <= max_chunk")
        if self.window < self.max_size:
            raise ConfigError(f"chunk window {self.window} is smaller than max_chunk")

    def chunks(self, f: Readable) -> Iterator[bytes]:
        """Yield the content-defined chunks of ``f`` in order, reading it once.

        Content that fits in one read is chunked where it lies: most protected files are
        small, and a fresh window buffer for each would cost more than the chunking.
        """
        first = f.read(READ_SIZE)
        if len(first) < READ_SIZE and not (more := f.read(READ_SIZE)):
            view = memoryview(first)
            for offset, length in self._cuts(view, len(first), True):
                yield bytes(view[offset : offset + length])
            return
        buf = bytearray(self.window)
        buf[: len(first)] = first
        filled, eof = len(first), False
        if len(first) < READ_SIZE:  # a short read that was not the end
            buf[filled : filled + len(more)] = more
            filled += len(more)
        while not eof:
            filled, eof = _fill(f, buf, filled)
            done = 0
            view = memoryview(buf)
            for offset, length in self._cuts(view, filled, eof):
                yield bytes(view[offset : offset + length])
                done = offset + length
            view.release()
            # Same-length slice assignment: the buffer is never resized, only reused.
            tail = filled - done
            buf[:tail] = buf[done:filled]
            filled = tail

    def _cuts(self, buf: memoryview, filled: int, eof: bool) -> list[tuple[int, int]]:
        """Cuts in ``buf[:filled]`` that later bytes of the stream cannot move."""
        cuts: list[tuple[int, int]] = []
        if filled == 0:
            return cuts
        for c in fastcdc(buf[:filled], self.min_size, self.avg_size, self.max_size):
            if not eof and c.offset + self.max_size > filled:
                break
            cuts.append((c.offset, c.length))
        return cuts


def _fill(f: Readable, buf: bytearray, filled: int) -> tuple[int, bool]:
    """Read into ``buf[filled:]`` until it is full (False) or the stream ends (True)."""
    while filled < len(buf):
        want = min(len(buf) - filled, READ_SIZE)
        data = f.read(want)
        if not data:
            return filled, True
        if len(data) > want:
            raise ConfigError(f"reader returned {len(data)} bytes when asked for {want}")
        buf[filled : filled + len(data)] = data
        filled += len(data)
    return filled, False
