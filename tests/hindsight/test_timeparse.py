"""parse_time and format_window: every accepted form, DST edges, errors and precision."""

from __future__ import annotations

import os
import time as clock
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from hindsight.timeparse import TIME_FORMS, format_window, parse_time
from journal.errors import ConfigError
from journal.events import now_us

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MADRID = ZoneInfo("Europe/Madrid")
NOW = (datetime(2026, 11, 25, 12, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
ZONES = {"Madrid": MADRID, "UTC": UTC}


def us(iso: str) -> int:
    """Microseconds for an ISO time with a zone, computed without parse_time."""
    return (datetime.fromisoformat(iso) - EPOCH) // timedelta(microseconds=1)


def legacy_parse_time(text: str, now: int) -> int:
    """parse_time as it was before epoch and relative forms: the oracle for old forms."""
    import re

    text = text.strip()
    if m := re.match(r"^(\d+)\s*(s|m|h|d|w)$", text):
        return now - int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m[2]] * 10**6
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return int(moment.timestamp() * 1_000_000)


@contextmanager
def machine_zone(name: str) -> Iterator[str]:
    """Make ``name`` this process's local zone (TZ) for a while."""
    if not hasattr(clock, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    old = os.environ.get("TZ")
    os.environ["TZ"] = name
    clock.tzset()
    try:
        yield name
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        clock.tzset()


@pytest.fixture
def system_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """The parametrized zone as this process's local zone for one test."""
    with machine_zone(request.param) as name:
        yield name


FORMS = [
    # relative, with NOW = 2026-11-25T12:00:00Z (13:00 in Madrid)
    ("Madrid", "now", "2026-11-25T12:00:00Z"),
    ("Madrid", "NOW", "2026-11-25T12:00:00Z"),
    ("Madrid", "today", "2026-11-25T00:00:00+01:00"),
    ("Madrid", "yesterday", "2026-11-24T00:00:00+01:00"),
    ("Madrid", "yesterday 14:00", "2026-11-24T14:00:00+01:00"),
    ("Madrid", "yesterday at 14:00", "2026-11-24T14:00:00+01:00"),
    ("Madrid", "  Yesterday   AT 14:00 ", "2026-11-24T14:00:00+01:00"),
    ("Madrid", "today 09:30:15", "2026-11-25T09:30:15+01:00"),
    ("Madrid", "today 09:30:15.25", "2026-11-25T09:30:15.250000+01:00"),
    ("UTC", "today", "2026-11-25T00:00:00Z"),
    ("UTC", "yesterday 14:00", "2026-11-24T14:00:00Z"),
    ("Madrid", "2 hours ago", "2026-11-25T10:00:00Z"),
    ("Madrid", "90 minutes ago", "2026-11-25T10:30:00Z"),
    ("Madrid", "1 day ago", "2026-11-24T12:00:00Z"),
    ("Madrid", "3 weeks ago", "2026-11-04T12:00:00Z"),
    ("Madrid", "30 seconds ago", "2026-11-25T11:59:30Z"),
    ("Madrid", "1 hour ago", "2026-11-25T11:00:00Z"),
    ("Madrid", "2h ago", "2026-11-25T10:00:00Z"),
    ("Madrid", "2 hrs ago", "2026-11-25T10:00:00Z"),
    ("Madrid", "1.5h ago", "2026-11-25T10:30:00Z"),
    ("Madrid", "0.25s", "2026-11-25T11:59:59.750000Z"),
    ("Madrid", "15m", "2026-11-25T11:45:00Z"),
    ("Madrid", "15 m", "2026-11-25T11:45:00Z"),
    ("Madrid", "90s", "2026-11-25T11:58:30Z"),
    ("Madrid", "7d", "2026-11-18T12:00:00Z"),
    ("Madrid", "1w", "2026-11-18T12:00:00Z"),
    # ISO 8601
    ("Madrid", "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z"),
    ("Madrid", "2026-11-25T10:00:00.123456Z", "2026-11-25T10:00:00.123456Z"),
    ("Madrid", "2026-11-25T10:00:00.123456789Z", "2026-11-25T10:00:00.123456Z"),
    ("Madrid", "2026-11-25T10:00:00.5+02:00", "2026-11-25T08:00:00.500000Z"),
    ("Madrid", "2026-11-25T10:00-05:30", "2026-11-25T15:30:00Z"),
    ("Madrid", "2026-11-25 10:00:05.5", "2026-11-25T10:00:05.500000+01:00"),
    ("UTC", "2026-11-25 10:00:05.5", "2026-11-25T10:00:05.500000Z"),
    ("Madrid", "2026-07-01 10:00", "2026-07-01T10:00:00+02:00"),
    ("Madrid", "2026-11-25", "2026-11-25T00:00:00+01:00"),
    ("UTC", "2026-11-25", "2026-11-25T00:00:00Z"),
    ("Madrid", "20261125", "2026-11-25T00:00:00+01:00"),
    ("Madrid", "2026-W48-3", "2026-11-25T00:00:00+01:00"),
    # epoch seconds (zone-independent)
    ("Madrid", "1764000000", "2025-11-24T16:00:00Z"),
    ("Madrid", "1764000000.25", "2025-11-24T16:00:00.250000Z"),
    ("Madrid", "1764000000.0000019", "2025-11-24T16:00:00.000001Z"),
    ("Madrid", "@1764000000", "2025-11-24T16:00:00Z"),
    ("Madrid", "@1764000000.000001", "2025-11-24T16:00:00.000001Z"),
    ("Madrid", "@0", "1970-01-01T00:00:00Z"),
    ("Madrid", "@20261125", "1970-08-23T12:05:25Z"),
    ("Madrid", "123456789", "1973-11-29T21:33:09Z"),
    ("UTC", " 1764000000 ", "2025-11-24T16:00:00Z"),
]


@pytest.mark.parametrize(("zone", "text", "expected"), FORMS, ids=[f"{z}:{t}" for z, t, _ in FORMS])
def test_every_form_parses(zone: str, text: str, expected: str) -> None:
    got = parse_time(text, NOW, tz=ZONES[zone])
    assert got == us(expected), f"{text!r} in {zone}: got {got}, expected {expected}"


ERRORS = [
    ("yesterday-ish", "cannot read time 'yesterday-ish'"),
    ("", "cannot read time ''"),
    ("2 months ago", "'2 hours ago'"),
    ("15M", "cannot read time"),
    ("tomorrow", "epoch seconds (1764000000"),
    ("now 14:00", "cannot read time"),
    ("2026-13-01", "cannot read time"),
    ("15", "write @15 for epoch seconds"),
    ("1764000000123", "epoch milliseconds, not seconds; divide by 1000 and give seconds, e.g. "),
    ("1764000000123456", "epoch microseconds, not seconds; divide by 1000000"),
    ("1764000000123456789", "epoch nanoseconds"),
    ("1764000000000", "e.g. 1764000000"),
    ("@999999999999", "after the year 9999"),
    ("yesterday 25:00", "cannot read the time of day"),
    ("today 14:00+02:00", "takes no zone"),
]


@pytest.mark.parametrize(("text", "fragment"), ERRORS, ids=[t or "empty" for t, _ in ERRORS])
def test_unreadable_times_are_config_errors_naming_the_text(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_time(text, NOW, tz=MADRID)
    message = str(caught.value)
    assert repr(text) in message and fragment in message, message
    assert "\n" not in message, "one line, for the CLI"


@pytest.mark.parametrize(
    ("text", "zone"), [("0001-01-01", "Asia/Tokyo"), ("9999-12-31 23:59", "America/New_York")]
)
def test_local_times_past_the_ends_of_the_calendar_are_config_errors(text: str, zone: str) -> None:
    with pytest.raises(ConfigError, match=f"time {text!r} is out of range"):
        parse_time(text, NOW, tz=ZoneInfo(zone))
    with machine_zone(zone), pytest.raises(ConfigError, match=f"time {text!r} is out of range"):
        parse_time(text, NOW)


def test_the_general_error_lists_every_form_with_examples() -> None:
    with pytest.raises(ConfigError, match="cannot read time") as caught:
        parse_time("soon", NOW)
    assert TIME_FORMS in str(caught.value)
    for example in ("2026-11-25T10:00:00.25Z", "@1764000000", "yesterday 14:00", "2 hours ago"):
        assert example in TIME_FORMS


DST = [
    # Europe/Madrid 2026: 02:00 CET -> 03:00 CEST on 29 March, 03:00 CEST -> 02:00 CET on 25 Oct
    ("gap: the later instant", "Europe/Madrid", "2026-03-29 02:30", "2026-03-29T01:30:00Z"),
    ("gap start", "Europe/Madrid", "2026-03-29 02:00", "2026-03-29T01:00:00Z"),
    (
        "just before gap",
        "Europe/Madrid",
        "2026-03-29 01:59:59.999999",
        "2026-03-29T00:59:59.999999Z",
    ),
    ("just after gap", "Europe/Madrid", "2026-03-29 03:00", "2026-03-29T01:00:00Z"),
    ("fold: first occurrence", "Europe/Madrid", "2026-10-25 02:30", "2026-10-25T00:30:00Z"),
    ("fold start", "Europe/Madrid", "2026-10-25 02:00", "2026-10-25T00:00:00Z"),
    ("after fold", "Europe/Madrid", "2026-10-25 03:00", "2026-10-25T02:00:00Z"),
    # Chile skips local midnight: 2026-09-06 00:00 -04 -> 01:00 -03
    ("midnight gap", "America/Santiago", "2026-09-06", "2026-09-06T04:00:00Z"),
    ("US gap", "America/New_York", "2026-03-08 02:30", "2026-03-08T07:30:00Z"),
    ("US fold", "America/New_York", "2026-11-01 01:30", "2026-11-01T05:30:00Z"),
]


@pytest.mark.parametrize(
    ("zone", "text", "expected"), [d[1:] for d in DST], ids=[d[0] for d in DST]
)
def test_dst_edges_with_zoneinfo(zone: str, text: str, expected: str) -> None:
    assert parse_time(text, NOW, tz=ZoneInfo(zone)) == us(expected)


@pytest.mark.parametrize(
    ("system_zone", "text", "expected"),
    [("Europe/Madrid", *d[2:]) for d in DST if d[1] == "Europe/Madrid"]
    + [("America/Santiago", "2026-09-06", "2026-09-06T04:00:00Z")],
    ids=[d[0] for d in DST if d[1] == "Europe/Madrid"] + ["midnight gap"],
    indirect=["system_zone"],
)
def test_dst_edges_in_the_machine_zone_match_zoneinfo(
    system_zone: str, text: str, expected: str
) -> None:
    assert parse_time(text, NOW) == us(expected), f"{text!r} with TZ={system_zone}"


def test_the_skipped_midnight_is_a_gap_and_today_lands_after_it() -> None:
    santiago = ZoneInfo("America/Santiago")
    assert datetime.fromisoformat("2026-09-06T04:00:00Z").astimezone(santiago).hour == 1
    noon = us("2026-09-06T12:00:00-03:00")
    assert parse_time("today", noon, tz=santiago) == us("2026-09-06T04:00:00Z")


def test_day_durations_are_24_hours_across_dst_but_yesterday_is_calendar() -> None:
    after_change = us("2026-03-29T12:00:00+02:00")
    assert parse_time("1 day ago", after_change, tz=MADRID) == us("2026-03-28T11:00:00+01:00")
    assert parse_time("yesterday 12:00", after_change, tz=MADRID) == us("2026-03-28T12:00:00+01:00")


def test_relative_days_follow_the_local_date_not_utc() -> None:
    late = us("2026-11-25T23:30:00Z")  # already the 26th in Madrid
    assert parse_time("today", late, tz=MADRID) == us("2026-11-26T00:00:00+01:00")
    assert parse_time("today", late, tz=UTC) == us("2026-11-25T00:00:00Z")
    assert parse_time("today", late, tz=timezone(timedelta(hours=-5))) == us(
        "2026-11-25T00:00:00-05:00"
    )


instants = st.integers(min_value=0, max_value=us("2199-12-31T00:00:00Z"))


@given(instants)
def test_sub_second_precision_round_trips(instant: int) -> None:
    moment = EPOCH + timedelta(microseconds=instant)
    whole, fraction = divmod(instant, 1_000_000)
    assert parse_time(moment.isoformat().replace("+00:00", "Z")) == instant
    assert parse_time(moment.astimezone(MADRID).isoformat()) == instant
    assert parse_time(f"@{whole}.{fraction:06d}") == instant
    if whole >= 10**8:  # shorter bare numbers need the @
        assert parse_time(f"{whole}.{fraction:06d}") == instant


@given(instants)
def test_local_wall_times_round_trip_unless_repeated(instant: int) -> None:
    wall = (EPOCH + timedelta(microseconds=instant)).astimezone(MADRID).replace(tzinfo=None)
    first = wall.replace(tzinfo=MADRID, fold=0).utcoffset()
    assume(first == wall.replace(tzinfo=MADRID, fold=1).utcoffset())  # not in a fold
    assert parse_time(wall.isoformat(sep=" "), tz=MADRID) == instant
    assert parse_time(wall.isoformat(), tz=UTC) == (wall.replace(tzinfo=UTC) - EPOCH) // timedelta(
        microseconds=1
    )


LEGACY = ["90s", "15m", "15 m", "2h", "7d", "1w", "1h", "2d", "2999-01-01T00:00:00Z",
          "2025-11-28T12:00:00Z", "2026-11-25T10:00:00+02:00", "2026-11-25 10:00", "2026-11-25",
          "2026-07-01T10:00", "20261125", "2026-W48-3", " 2026-11-25T10:00:00Z "]  # fmt: skip


@pytest.mark.parametrize("system_zone", ["Europe/Madrid", "UTC"], indirect=True)
@pytest.mark.parametrize("text", LEGACY)
def test_forms_callers_used_before_parse_as_before(system_zone: str, text: str) -> None:
    assert parse_time(text, NOW) == legacy_parse_time(text, NOW), f"{text!r} TZ={system_zone}"


@given(
    moment=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2199, 1, 1), timezones=st.none()
    ),
    zoned=st.booleans(),
)
def test_iso_times_parse_as_before_outside_dst_gaps(moment: datetime, zoned: bool) -> None:
    moment = moment.replace(microsecond=0)  # the old float maths could be 1 us off
    if zoned:
        moment = moment.replace(tzinfo=UTC)
    else:
        assume(moment.replace(tzinfo=MADRID).astimezone(UTC).astimezone(MADRID).hour == moment.hour)
    text = moment.isoformat()
    with machine_zone("Europe/Madrid"):
        assert parse_time(text, NOW) == legacy_parse_time(text, NOW), text


def test_now_defaults_to_the_clock() -> None:
    before = now_us()
    assert before <= parse_time("now") <= now_us()
    assert before - 3_600_000_000 <= parse_time("1h") <= now_us() - 3_600_000_000


WEEK = "2026-11-23T10:00:00Z .. 2026-11-30T10:00:00Z (7 days)"
WINDOWS = [
    ("2026-11-23T10:00:00Z", "2026-11-30T10:00:00Z", WEEK),
    ("2026-11-23T10:00:00.5Z", "2026-11-24T11:30:59.9Z", ".5Z .. 2026-11-24T11:30:59.9Z"),
    ("2026-11-23T10:00:00.5Z", "2026-11-24T11:30:59.9Z", "(1 day 1 hour)"),
    ("2026-11-23T10:00:00Z", "2026-11-23T12:05:00Z", "(2 hours 5 minutes)"),
    ("2026-11-23T10:00:00Z", "2026-11-23T10:00:01Z", "(1 second)"),
    ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00.25Z", "(under a second)"),
    ("2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z", "(0 seconds)"),
    ("2026-11-23T10:00:00Z", "2026-11-22T10:00:00Z", "(empty)"),
]  # fmt: skip


@pytest.mark.parametrize(("start", "end", "fragment"), WINDOWS, ids=[w[2][-12:] for w in WINDOWS])
def test_format_window(start: str, end: str, fragment: str) -> None:
    text = format_window(us(start), us(end))
    assert text.startswith("the point-in-time window is ") and fragment in text, text


@given(instants, instants)
def test_window_ends_paste_back_as_times(start: int, end: int) -> None:
    shown = format_window(start, end).removeprefix("the point-in-time window is ")
    first, _, rest = shown.partition(" .. ")
    assert (parse_time(first), parse_time(rest.split(" (")[0])) == (start, end)
