"""Parsing the moments users type: ISO 8601, epoch seconds and relative times like '2h ago'.

Every form resolves to an instant in microseconds since the epoch (UTC), keeping any sub-second
part the text gives (digits beyond microseconds are dropped). A time without a zone ('2026-11-25
10:00', 'yesterday 14:00', 'today') is a wall-clock time in the local zone: ``tz`` when given,
else this machine's zone. Wall-clock times that DST makes odd resolve deterministically:

- a time that never happened (in the spring-forward gap, e.g. 02:30 on 2026-03-29 in
  Europe/Madrid) is read with the offset in force before the jump: the later of the two
  candidate instants (02:30 CET = 03:30 CEST);
- a time that happened twice (in the autumn fold) is the first occurrence (the summer-time one).

Durations are fixed lengths: a day is 24 hours and a week 7 days, whatever DST does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from fractions import Fraction

from journal.errors import ConfigError
from journal.events import now_us

__all__ = ["TIME_FORMS", "format_window", "parse_time"]

TIME_FORMS = (
    "ISO 8601 (2026-11-25T10:00:00.25Z, 2026-11-25T12:00+02:00, '2026-11-25 10:00' in local "
    "time, 2026-11-25 for local midnight), epoch seconds (1764000000, 1764000000.25, "
    "@1764000000) or a relative time (now, today, yesterday, 'yesterday 14:00', "
    "'2 hours ago', 90m, 7d)"
)
"""The accepted forms with examples, for error messages and ``--help`` texts."""

_US = 1_000_000
_ONE_US = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH_S = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime can show

_EPOCH_RE = re.compile(r"(@)?(\d+)(?:\.(\d+))?")
_AGO_RE = re.compile(r"(\d+(?:\.\d+)?) ?([a-zA-Z]+)(?: ago)?", re.IGNORECASE)
_DAY_RE = re.compile(r"(today|yesterday)(?: (?:at )?(\S+))?", re.IGNORECASE)

_UNIT_S = {
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], 1),
    **dict.fromkeys(["m", "min", "mins", "minute", "minutes"], 60),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], 3600),
    **dict.fromkeys(["d", "day", "days"], 86400),
    **dict.fromkeys(["w", "wk", "wks", "week", "weeks"], 604800),
}
# How many digits a too-long epoch number carries beyond seconds, by its length.
_SUBSECOND_UNITS = [(19, 9, "nanoseconds"), (16, 6, "microseconds"), (13, 3, "milliseconds")]


def parse_time(text: str, now: int | None = None, *, tz: tzinfo | None = None) -> int:
    """Microseconds since the epoch for ``text``; raises ConfigError naming it if unreadable.

    Accepts ISO 8601 ('2026-11-25T10:00:00.123456Z', '2026-11-25T12:00+02:00', '2026-11-25
    10:00:05.5' and '2026-11-25' in local time), epoch seconds ('1764000000', '1764000000.25',
    '@1764000000'; a bare number needs 9 to 12 digits, 8 digits is a YYYYMMDD date) and
    relative times: 'now', 'today', 'yesterday', 'yesterday 14:00', 'today at 09:30:15', and
    durations ago ('90s', '15m', '2h ago', '2 hours ago', '1 day ago', '3 weeks ago').
    ``now`` (microseconds) is the reference for relative times; ``tz`` is the local zone (a
    zoneinfo.ZoneInfo) for times without one, this machine's zone when None.
    """
    cleaned = " ".join(text.split())
    current = now_us() if now is None else now
    try:
        for read in _READERS:
            if (us := read(cleaned, current, tz)) is not None:
                return us
    except (OverflowError, OSError, ValueError) as exc:  # datetime arithmetic at year 1 or 9999
        raise ConfigError(f"time {text!r} is out of range: {exc}") from None
    raise ConfigError(f"cannot read time {text!r}; use {TIME_FORMS}")


def format_window(start_us: int, end_us: int) -> str:
    """'the point-in-time window is START .. END (LENGTH)' in UTC, for error messages.

    The ends are exact (microseconds shown when present), so a user can paste them back as a
    TIME; the length shows its two largest non-zero units, rounded down.
    """
    start, end = _format_instant(start_us), _format_instant(end_us)
    return f"the point-in-time window is {start} .. {end} ({_format_span(end_us - start_us)})"


def _read_epoch(text: str, now: int, tz: tzinfo | None) -> int | None:
    """Epoch seconds: '1764000000', '1764000000.25', '@1764000000'."""
    if (m := _EPOCH_RE.fullmatch(text)) is None:
        return None
    at, whole, fraction = m.groups()
    if not at and len(whole) == 8 and not fraction:
        return None  # an ISO 8601 basic date, 20261125, as parse_time always read it
    if not at and len(whole) < 9:
        raise ConfigError(
            f"cannot read time {text!r}: a short bare number is ambiguous; write @{text} for "
            f"epoch seconds or add a unit for a duration ago (e.g. {whole}m)"
        )
    _check_epoch_seconds(text, whole)
    return int(whole) * _US + int((fraction or "")[:6].ljust(6, "0"))


def _check_epoch_seconds(text: str, whole: str) -> None:
    """Refuse epoch numbers that are surely not seconds: too many digits, or past 9999."""
    for digits, shift, unit in _SUBSECOND_UNITS:
        if len(whole) >= digits:
            kept, dropped = whole[:-shift], whole[-shift:].rstrip("0")
            seconds = kept + ("." + dropped if dropped else "")
            raise ConfigError(
                f"time {text!r} looks like epoch {unit}, not seconds; divide by {10**shift} "
                f"and give seconds, e.g. {seconds}"
            )
    if int(whole) > _MAX_EPOCH_S:
        raise ConfigError(
            f"time {text!r} is after the year 9999; epoch seconds go up to {_MAX_EPOCH_S}"
        )


def _read_ago(text: str, now: int, tz: tzinfo | None) -> int | None:
    """A duration before ``now``: '15m', '2h ago', '90 minutes ago', '1.5 days ago'."""
    if (m := _AGO_RE.fullmatch(text)) is None:
        return None
    unit = m[2] if len(m[2]) == 1 else m[2].lower()  # 'M' stays unknown: it reads as months
    if (size := _UNIT_S.get(unit)) is None:
        return None
    return now - int(Fraction(m[1]) * size * _US)


def _read_now(text: str, now: int, tz: tzinfo | None) -> int | None:
    """'now'."""
    return now if text.lower() == "now" else None


def _read_day(text: str, now: int, tz: tzinfo | None) -> int | None:
    """'today' / 'yesterday' at local midnight, or at a local time of day: 'yesterday 14:00'."""
    if (m := _DAY_RE.fullmatch(text)) is None:
        return None
    day: date = _wall_at(now, tz).date()
    if m[1].lower() == "yesterday":
        day -= timedelta(days=1)
    return _from_wall(datetime.combine(day, _time_of_day(text, m[2])), tz)


def _time_of_day(text: str, clock: str | None) -> time:
    """The local time of day in 'yesterday 14:00'; midnight when none is given."""
    if clock is None:
        return time()
    try:
        moment = time.fromisoformat(clock)
    except ValueError:
        raise ConfigError(
            f"cannot read the time of day in {text!r}; use HH:MM, HH:MM:SS or HH:MM:SS.ffffff, "
            "e.g. 'yesterday 14:00' or 'today 09:30:15.5'"
        ) from None
    if moment.tzinfo is not None:
        raise ConfigError(
            f"time {text!r}: a time of day after today/yesterday is local time and takes no "
            "zone; give a full ISO 8601 time for another zone, e.g. 2026-11-25T14:00:00Z"
        )
    return moment


def _read_iso(text: str, now: int, tz: tzinfo | None) -> int | None:
    """ISO 8601 with or without zone: '2026-11-25T10:00:00.5Z', '2026-11-25 10:00', '2026-11-25'."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return _from_wall(moment, tz)
    return (moment - _EPOCH) // _ONE_US


# Order matters: epoch numbers before ISO, whose basic format takes some long digit strings.
_READERS: list[Callable[[str, int, tzinfo | None], int | None]] = [
    _read_epoch,
    _read_ago,
    _read_now,
    _read_day,
    _read_iso,
]


def _from_wall(wall: datetime, tz: tzinfo | None) -> int:
    """Microseconds for the naive local time ``wall`` in ``tz`` (None: this machine's zone).

    Both PEP 495 folds give a candidate instant. Of those that read back as ``wall`` the first
    wins (a repeated hour); if none does, ``wall`` is in a DST gap and the later one wins.
    """
    candidates = sorted({_instant(wall.replace(fold=fold), tz) for fold in (0, 1)})
    real = [us for us in candidates if _wall_at(us, tz) == wall]
    return real[0] if real else candidates[-1]


def _instant(wall: datetime, tz: tzinfo | None) -> int:
    """Microseconds for ``wall`` read in ``tz`` with the fold ``wall`` carries."""
    aware = wall.astimezone() if tz is None else wall.replace(tzinfo=tz)
    return (aware - _EPOCH) // _ONE_US


def _wall_at(us: int, tz: tzinfo | None) -> datetime:
    """The naive local wall-clock time in ``tz`` (None: this machine's zone) at instant ``us``."""
    return (_EPOCH + us * _ONE_US).astimezone(tz).replace(tzinfo=None)


def _format_instant(us: int) -> str:
    """ISO 8601 UTC with a Z and as many fractional digits as needed: '...T10:00:00.5Z'."""
    moment = (_EPOCH + us * _ONE_US).replace(tzinfo=None)
    text = moment.isoformat(timespec="microseconds").rstrip("0")
    return text.removesuffix(".") + "Z"


def _format_span(us: int) -> str:
    """A length for people, two largest units: '7 days', '1 day 2 hours', '45 seconds'."""
    if us < 0:
        return "empty"
    seconds = us // _US
    parts = []
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}" + ("" if count == 1 else "s"))
    if not parts:
        return "under a second" if us else "0 seconds"
    return " ".join(parts[:2])
