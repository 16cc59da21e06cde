"""Parsing the moments users type: ISO 8601 times and 'ago' durations like 15m or 2h."""

from __future__ import annotations

import re
from datetime import datetime

from journal.errors import ConfigError
from journal.events import now_us

__all__ = ["parse_time"]

_AGO = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: int | None = None) -> int:
    """Microseconds since the epoch for ``text``.

    Accepts '2026-11-25T10:00:00Z', '2026-11-25 10:00' (no zone: local time), '2026-11-25',
    or a duration ago: '90s', '15m', '2h', '7d', '1w'.
    """
    text = text.strip()
    if m := _AGO.match(text):
        return (now_us() if now is None else now) - int(m[1]) * _UNIT_S[m[2]] * 1_000_000
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"cannot read time {text!r}; use e.g. 2026-11-25T10:00:00Z, '2026-11-25 10:00' "
            "(local time) or a duration ago such as 15m, 2h, 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # naive: the user's local time
    return int(moment.timestamp() * 1_000_000)
