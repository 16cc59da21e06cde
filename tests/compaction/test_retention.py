"""Retention: durations, each rule at its bucket boundaries, safety rules, a 90-day simulation
with pruning after every backup, and properties checked against a direct oracle."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from random import Random
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compaction.retention import (
    DEFAULT_POINT_IN_TIME_S,
    POINT_TYPES,
    RestorePoint,
    RetentionPolicy,
    Selection,
    TypePolicy,
    format_duration,
    parse_duration,
    select,
)
from journal.errors import ConfigError

US = 1_000_000
DAY = 86_400
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # a 30-minute DST shift
NOTHING = RetentionPolicy(full=TypePolicy(), incremental=TypePolicy())


def at(text: str, tz: tzinfo = UTC) -> int:
    """Epoch microseconds of wall-clock ``text`` in ``tz`` (a time in a DST gap: pre-gap offset)."""
    return (datetime.fromisoformat(text).replace(tzinfo=tz) - EPOCH) // timedelta(microseconds=1)


def full(id: str, time_us: int) -> RestorePoint:
    return RestorePoint(id, time_us, "full")


def incr(id: str, time_us: int) -> RestorePoint:
    return RestorePoint(id, time_us, "incremental")


def incrementals(tz: tzinfo, *times: str) -> list[RestorePoint]:
    """Incremental points named by their wall-clock time in ``tz``."""
    return [incr(t, at(t, tz)) for t in times]


def only(**rules: int) -> RetentionPolicy:
    """A policy with ``rules`` for incrementals and nothing else (no safety rule applies)."""
    return RetentionPolicy(full=TypePolicy(), incremental=TypePolicy(**rules))


def kept(points: Iterable[RestorePoint], policy: RetentionPolicy, now_us: int, tz: tzinfo) -> list:
    return list(select(points, policy, now_us, tz).keep)


LATER = at("2030-01-01 00:00")  # a "now" after every point, for rules that ignore now


# --- durations -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90m", 5_400),
        ("12h", 43_200),
        ("30d", 30 * DAY),
        ("2w", 14 * DAY),
        ("1d12h", DAY + 12 * 3_600),
        ("0", 0),
        ("0s", 0),
        ("1w2d3h4m5s", 9 * DAY + 3 * 3_600 + 4 * 60 + 5),
        (" 7d ", 7 * DAY),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else "",
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "30", "00", "d", "12h1d", "1d1d", "-1d", "1.5h", "1y", "1D", "1 d", "\u0663d"],
    ids=repr,
)
def test_parse_duration_refuses_with_the_allowed_forms(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert repr(text) in message and "'1d12h'" in message, message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0"), (30 * DAY, "30d"), (5_400, "1h30m"), (DAY + 12 * 3_600, "1d12h"), (61, "1m1s")],
    ids=str,
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10**10))
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


# --- policies --------------------------------------------------------------------------------


def test_default_policy_is_the_briefs() -> None:
    policy = RetentionPolicy()
    assert policy.full == TypePolicy(keep_last=1, keep_within_s=30 * DAY)
    assert policy.incremental == TypePolicy(keep_within_s=7 * DAY)
    assert policy.point_in_time_s == DEFAULT_POINT_IN_TIME_S == 7 * DAY
    assert policy.for_type("full") is policy.full
    assert policy.for_type("incremental") is policy.incremental


@pytest.mark.parametrize(
    "build",
    [
        lambda: TypePolicy(keep_last=-1),
        lambda: TypePolicy(keep_daily=True),
        lambda: TypePolicy(keep_within_s=1.5),  # type: ignore[arg-type]
        lambda: RetentionPolicy(point_in_time_s=-1),
    ],
    ids=["negative", "bool", "float", "negative-pitr"],
)
def test_policy_refuses_bad_numbers(build: object) -> None:
    with pytest.raises(ConfigError, match="whole number >= 0"):
        build()  # type: ignore[operator]


# --- keep_last -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, []),
        (2, ["i3", "i4"]),
        (5, ["i0", "i1", "i2", "i3", "i4"]),
        (9, ["i0", "i1", "i2", "i3", "i4"]),
    ],
    ids=["zero", "two", "all", "more-than-all"],
)
def test_keep_last_keeps_the_n_newest(n: int, expected: list[str]) -> None:
    points = [incr(f"i{k}", at("2024-05-01 00:00") + k * 3_600 * US) for k in range(5)]
    selection = select(points[::-1], only(keep_last=n), LATER, UTC)
    assert selection.keep == {i: ["last"] for i in expected}
    assert selection.remove == [p.id for p in points if p.id not in expected]


def test_equal_times_are_ordered_by_id() -> None:
    t = at("2024-05-01 00:00")
    selection = select([incr("b", t), incr("c", t), incr("a", t)], only(keep_last=1), LATER, UTC)
    assert selection == Selection(keep={"c": ["last"]}, remove=["a", "b"])


# --- calendar buckets ------------------------------------------------------------------------


def test_keep_hourly_boundary_is_the_top_of_the_hour() -> None:
    points = incrementals(UTC, "2024-05-01 10:00", "2024-05-01 10:59:59.999999", "2024-05-01 11:00")
    assert kept(points, only(keep_hourly=2), LATER, UTC) == [
        "2024-05-01 10:59:59.999999",
        "2024-05-01 11:00",
    ]


@pytest.mark.parametrize(
    ("tz", "expected"),
    [(UTC, ["10:40"]), (KOLKATA, ["10:20", "10:40"])],  # Kolkata: 15:50 and 16:10
    ids=["utc", "kolkata"],
)
def test_keep_hourly_uses_the_time_zones_hours(tz: tzinfo, expected: list[str]) -> None:
    points = [incr("10:20", at("2024-05-01 10:20")), incr("10:40", at("2024-05-01 10:40"))]
    assert kept(points, only(keep_hourly=5), LATER, tz) == expected


@pytest.mark.parametrize(
    ("tz", "expected"), [(UTC, ["00:30Z", "01:10Z"]), (BERLIN, ["01:10Z"])], ids=["utc", "berlin"]
)
def test_keep_hourly_repeated_wall_clock_hour_is_one_bucket(
    tz: tzinfo, expected: list[str]
) -> None:
    # Berlin falls back at 03:00 CEST: 02:30 CEST (00:30Z) and 02:10 CET (01:10Z) share "02".
    points = [incr("00:30Z", at("2024-10-27 00:30")), incr("01:10Z", at("2024-10-27 01:10"))]
    assert kept(points, only(keep_hourly=5), LATER, tz) == expected


def test_keep_daily_boundary_is_midnight() -> None:
    points = incrementals(UTC, "2024-05-01 00:00", "2024-05-01 23:59:59.999999", "2024-05-02 00:00")
    assert kept(points, only(keep_daily=2), LATER, UTC) == [
        "2024-05-01 23:59:59.999999",
        "2024-05-02 00:00",
    ]


@pytest.mark.parametrize(
    ("tz", "expected"),
    [(UTC, ["c"]), (BERLIN, ["b", "c"]), (NEW_YORK, ["c"])],
    ids=["utc", "berlin", "new-york"],
)
def test_keep_daily_uses_the_time_zones_midnight(tz: tzinfo, expected: list[str]) -> None:
    # Berlin (UTC+2): a 14:00 and b 23:30 on May 1, c 00:30 on May 2.
    points = [
        incr("a", at("2024-05-01 12:00")),
        incr("b", at("2024-05-01 21:30")),
        incr("c", at("2024-05-01 22:30")),
    ]
    assert kept(points, only(keep_daily=2), LATER, tz) == expected


def test_keep_daily_a_25_hour_day_is_one_bucket() -> None:
    points = incrementals(BERLIN, "2024-10-27 00:30", "2024-10-27 23:30")
    assert kept(points, only(keep_daily=5), LATER, BERLIN) == ["2024-10-27 23:30"]


def test_keep_daily_counts_days_that_have_points_not_calendar_days() -> None:
    points = incrementals(UTC, "2024-01-01 12:00", "2024-01-05 12:00", "2024-01-10 12:00")
    assert kept(points, only(keep_daily=2), LATER, UTC) == ["2024-01-05 12:00", "2024-01-10 12:00"]


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, ["2024-03-25 00:00"]), (2, ["2024-03-24 23:59:59.999999", "2024-03-25 00:00"])],
    ids=["one", "two"],
)
def test_keep_weekly_iso_weeks_start_on_monday(n: int, expected: list[str]) -> None:
    points = incrementals(UTC, "2024-03-18 00:00", "2024-03-24 23:59:59.999999", "2024-03-25 00:00")
    assert kept(points, only(keep_weekly=n), LATER, UTC) == expected


def test_keep_weekly_iso_week_spans_the_new_year() -> None:
    # 2024-12-30 (Monday) to 2025-01-05 is ISO week 2025-W01; 2024-12-29 ends 2024-W52.
    points = incrementals(UTC, "2024-12-29 12:00", "2024-12-30 12:00", "2025-01-05 12:00")
    assert kept(points, only(keep_weekly=2), LATER, UTC) == ["2024-12-29 12:00", "2025-01-05 12:00"]


@pytest.mark.parametrize(
    ("tz", "expected"),
    [(UTC, ["jan-31", "feb-10"]), (BERLIN, ["jan-15", "feb-10"])],
    ids=["utc", "berlin"],
)
def test_keep_monthly_uses_the_time_zones_month(tz: tzinfo, expected: list[str]) -> None:
    # 2024-01-31 23:30Z is 2024-02-01 00:30 in Berlin.
    points = [
        incr("jan-15", at("2024-01-15 12:00")),
        incr("jan-31", at("2024-01-31 23:30")),
        incr("feb-10", at("2024-02-10 12:00")),
    ]
    assert kept(points, only(keep_monthly=2), LATER, tz) == expected


def test_keep_yearly() -> None:
    points = incrementals(
        UTC,
        "2022-06-01 00:00",
        "2023-01-01 00:00",
        "2023-12-31 23:59:59.999999",
        "2024-01-01 00:00",
    )
    assert kept(points, only(keep_yearly=2), LATER, UTC) == [
        "2023-12-31 23:59:59.999999",
        "2024-01-01 00:00",
    ]


@pytest.mark.parametrize("rule", ["hourly", "daily", "weekly", "monthly"])
def test_buckets_a_year_apart_are_distinct(rule: str) -> None:
    # Same hour, date, ISO week number (W18) and month, one year apart.
    points = incrementals(UTC, "2023-05-02 10:00", "2024-05-02 10:00")
    assert kept(points, only(**{f"keep_{rule}": 2}), LATER, UTC) == [p.id for p in points]


# --- keep_within -----------------------------------------------------------------------------


def test_keep_within_keeps_points_younger_than_the_duration() -> None:
    now = at("2024-05-08 00:00")
    points = [
        incr("exactly-7d", now - 7 * DAY * US),
        incr("7d-minus-1us", now - 7 * DAY * US + 1),
        incr("1s", now - US),
        incr("now", now),
    ]
    selection = select(points, only(keep_within_s=7 * DAY), now, UTC)
    assert selection.keep == {i: ["within 7d"] for i in ["7d-minus-1us", "1s", "now"]}
    assert selection.remove == ["exactly-7d"]
    assert select(points, only(keep_within_s=0), now, UTC).remove == [p.id for p in points]


def test_keep_within_is_elapsed_time_across_dst() -> None:
    # A wall-clock day before 12:00 CET on 2024-10-27 is 25 hours ago: outside "1d".
    now = at("2024-10-27 12:00", BERLIN)
    points = incrementals(BERLIN, "2024-10-26 12:00", "2024-10-26 12:30")
    assert kept(points, only(keep_within_s=DAY), now, BERLIN) == []
    assert kept(points, only(keep_within_s=DAY + 3_600), now, BERLIN) == ["2024-10-26 12:30"]


# --- safety, types, reasons, validation ------------------------------------------------------


def test_newest_full_is_kept_when_the_policy_keeps_nothing() -> None:
    points = [full("f1", at("2023-01-01 00:00")), full("f2", at("2023-06-01 00:00"))]
    points += [incr("i1", at("2024-05-01 00:00"))]
    assert select(points, NOTHING, LATER, UTC) == Selection(
        keep={"f2": ["newest full"]}, remove=["f1", "i1"]
    )
    assert select(points[2:], NOTHING, LATER, UTC) == Selection(keep={}, remove=["i1"])


def test_points_in_the_future_are_kept() -> None:
    now = at("2024-05-01 00:00")
    points = [incr("i-past", now - US), incr("i-future", now + 1), full("f-future", now + US)]
    assert select(points, NOTHING, now, UTC) == Selection(
        keep={"i-future": ["future"], "f-future": ["newest full", "future"]}, remove=["i-past"]
    )


def test_rules_apply_to_each_type_separately() -> None:
    policy = RetentionPolicy(full=TypePolicy(keep_last=1), incremental=TypePolicy(keep_last=1))
    points = [full("f", at("2024-05-01 00:00"))]
    points += incrementals(UTC, "2024-05-02 00:00", "2024-05-03 00:00")
    assert select(points, policy, LATER, UTC) == Selection(
        keep={"f": ["last", "newest full"], "2024-05-03 00:00": ["last"]},
        remove=["2024-05-02 00:00"],
    )


def test_reasons_follow_rule_order() -> None:
    now = at("2024-05-02 00:00")
    policy = RetentionPolicy(
        full=TypePolicy(keep_last=1, keep_daily=1, keep_within_s=DAY), point_in_time_s=0
    )
    points = [full("f", now - US)]
    assert select(points, policy, now, UTC).keep == {
        "f": ["last", "daily", "within 1d", "newest full"]
    }


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ([incr("a", 0), full("a", 1)], "'a' appears twice"),
        ([RestorePoint("x", 0, "differential")], "type 'differential'"),  # type: ignore[arg-type]
        ([incr("far", 10**18)], "outside years 1-9999"),
    ],
    ids=["duplicate-id", "unknown-type", "time-out-of-range"],
)
def test_select_refuses_bad_points(points: list[RestorePoint], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        select(points, only(keep_daily=1), 0, UTC)


def test_no_points() -> None:
    assert select([], RetentionPolicy(), 0, UTC) == Selection(keep={}, remove=[])


# --- the oracle: the policy's definition computed directly ------------------------------------


def newest_first(points: Iterable[RestorePoint]) -> list[RestorePoint]:
    return sorted(points, key=lambda p: (p.time_us, p.id), reverse=True)


CALENDAR = [("hourly", "%Y-%m-%d %H"), ("daily", "%Y-%m-%d"), ("weekly", "%G-W%V")]
CALENDAR += [("monthly", "%Y-%m"), ("yearly", "%Y")]


def expected_keep(
    points: Sequence[RestorePoint], policy: RetentionPolicy, now_us: int, tz: tzinfo
) -> set[str]:
    """Ids the policy keeps, by its definition: label, group, sort, take."""
    keep: set[str] = set()
    for kind in POINT_TYPES:
        rules = policy.for_type(kind)
        mine = newest_first(p for p in points if p.type == kind)
        keep |= {p.id for p in mine[: rules.keep_last]}
        keep |= {p.id for p in mine if now_us - p.time_us < rules.keep_within_s * US}
        for name, label in CALENDAR:
            newest_in: dict[str, RestorePoint] = {}
            for p in reversed(mine):  # oldest first, so the newest of a label is written last
                newest_in[datetime.fromtimestamp(p.time_us // US, tz).strftime(label)] = p
            n = getattr(rules, f"keep_{name}")
            keep |= {p.id for p in newest_first(newest_in.values())[:n]}
    fulls = newest_first(p for p in points if p.type == "full")
    keep |= {p.id for p in fulls[:1]} | {p.id for p in points if p.time_us > now_us}
    return keep


# --- the 90-day simulation -------------------------------------------------------------------

SIM_START = date(2024, 1, 1)  # a Monday; 90 days run to Saturday 2024-03-30
SIM_DAYS = 90
CALENDAR_POLICY = RetentionPolicy(
    full=TypePolicy(keep_weekly=2, keep_monthly=3),
    incremental=TypePolicy(keep_daily=5, keep_weekly=4),
)


def schedule(tz: tzinfo) -> list[RestorePoint]:
    """The brief's cron: a full every Sunday 02:00 and an incremental every day 03:00, in ``tz``.

    In New York 2024-03-10 02:00 does not exist; it is taken as 03:00 EDT, the incremental's time.
    """
    points = []
    for n in range(SIM_DAYS):
        day = SIM_START + timedelta(days=n)
        if day.isoweekday() == 7:
            points.append(full(f"full-{day}", at(f"{day} 02:00", tz)))
        points.append(incr(f"incr-{day}", at(f"{day} 03:00", tz)))
    return points


def simulate(policy: RetentionPolicy, tz: tzinfo) -> dict[str, list[str]]:
    """Back up on schedule, prune after each backup, check every step; the kept ids by day.

    The expected set comes from every backup ever taken, so the test also shows that pruning
    step by step keeps exactly what one decision over the whole history would keep.
    """
    history: list[RestorePoint] = []
    stored: list[RestorePoint] = []
    by_day: dict[str, list[str]] = {}
    for point in schedule(tz):
        history.append(point)
        stored.append(point)
        stored = prune(stored, history, policy, point.time_us, tz)
        by_day[point.id.split("-", 1)[1]] = [p.id for p in stored]
    end = at(f"{SIM_START + timedelta(days=SIM_DAYS)} 00:00", tz)
    by_day["end"] = [p.id for p in prune(stored, history, policy, end, tz)]
    return by_day


def prune(
    stored: list[RestorePoint],
    history: list[RestorePoint],
    policy: RetentionPolicy,
    now_us: int,
    tz: tzinfo,
) -> list[RestorePoint]:
    """One prune with every check; returns the points that remain."""
    selection = select(stored, policy, now_us, tz)
    expected = expected_keep(history, policy, now_us, tz)
    assert set(selection.keep) == expected, f"at {now_us}: {selection} != {sorted(expected)}"
    newest_full = newest_first(p for p in stored if p.type == "full")[:1]
    assert all(p.id in selection.keep for p in newest_full), f"removed the newest full at {now_us}"
    remaining = [p for p in stored if p.id in selection.keep]
    again = select(remaining, policy, now_us, tz)
    assert again == Selection(keep=selection.keep, remove=[]), f"not idempotent at {now_us}"
    return remaining


def days(kind: str, *names: str) -> list[str]:
    return [f"{kind}-2024-{name}" for name in names]


SIM_TZS = pytest.mark.parametrize("tz", [UTC, NEW_YORK], ids=["utc", "new-york"])


@SIM_TZS
def test_90_days_with_the_default_policy(tz: tzinfo) -> None:
    kept_on = simulate(RetentionPolicy(), tz)

    assert kept_on["2024-01-03"] == days("incr", "01-01", "01-02", "01-03")
    # Feb 4: fulls younger than 30 days; incrementals younger than 7 days (Jan 28 is exactly 7).
    assert kept_on["2024-02-04"] == [
        *days("full", "01-07", "01-14", "01-21", "01-28"),
        *days("incr", "01-29", "01-30", "01-31", "02-01", "02-02", "02-03"),
        *days("full", "02-04"),
        *days("incr", "02-04"),
    ]
    # Mar 16: New York's clocks went forward on Mar 10, so Mar 9 03:00 EST is 6d23h old.
    recent = days("incr", "03-10", "03-11", "03-12", "03-13", "03-14", "03-15", "03-16")
    assert kept_on["2024-03-16"] == [
        *days("full", "02-18", "02-25", "03-03"),
        *(days("incr", "03-09") if tz is NEW_YORK else []),
        *days("full", "03-10"),
        *recent,
    ]
    # Day 90 and the end of it: fulls of the last 30 days (the newest among them), 7 incrementals.
    for when in ("2024-03-30", "end"):
        assert kept_on[when] == [
            *days("full", "03-03", "03-10", "03-17", "03-24"),
            *days("incr", "03-24", "03-25", "03-26", "03-27", "03-28", "03-29", "03-30"),
        ], when


@SIM_TZS
def test_90_days_with_a_calendar_policy(tz: tzinfo) -> None:
    kept_on = simulate(CALENDAR_POLICY, tz)

    # Feb 4: fulls of 2 ISO weeks (W04, W05) and 2 months; incrementals of 5 days and 4 weeks.
    assert kept_on["2024-02-04"] == [
        *days("incr", "01-14", "01-21"),
        *days("full", "01-28"),
        *days("incr", "01-28", "01-31", "02-01", "02-02", "02-03"),
        *days("full", "02-04"),
        *days("incr", "02-04"),
    ]
    # Day 90: monthly keeps Jan 28 and Feb 25; weekly keeps Mar 17 and 24 (and Mar 10 incr).
    for when in ("2024-03-30", "end"):
        assert kept_on[when] == [
            *days("full", "01-28", "02-25"),
            *days("incr", "03-10"),
            *days("full", "03-17"),
            *days("incr", "03-17"),
            *days("full", "03-24"),
            *days("incr", "03-24", "03-26", "03-27", "03-28", "03-29", "03-30"),
        ], when


def test_90_days_with_a_policy_that_keeps_nothing_leave_the_newest_full() -> None:
    assert simulate(NOTHING, UTC)["end"] == days("full", "03-24")


# --- properties ------------------------------------------------------------------------------

BASE = at("2024-01-01 00:00")
PROPERTY_TZS = [UTC, BERLIN, NEW_YORK, KOLKATA, LORD_HOWE]
times = st.one_of(
    st.integers(BASE - 400 * DAY * US, BASE + 400 * DAY * US),
    st.integers(-2_000, 2_000).map(lambda k: BASE + k * 1_800 * US),  # on bucket edges, tied
)
counts = st.integers(0, 4)
type_policies = st.builds(
    TypePolicy,
    keep_last=counts,
    keep_hourly=counts,
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
    keep_yearly=counts,
    keep_within_s=st.sampled_from([0, 3_600, DAY, 7 * DAY, 30 * DAY]),
)
policies = st.builds(RetentionPolicy, full=type_policies, incremental=type_policies)
point_lists = st.lists(st.tuples(times, st.sampled_from(POINT_TYPES)), max_size=30).map(
    lambda drawn: [RestorePoint(f"p{i}", t, kind) for i, (t, kind) in enumerate(drawn)]
)


@given(point_lists, policies, times, st.sampled_from(PROPERTY_TZS))
def test_select_partitions_and_keeps_what_the_rules_promise(
    points: list[RestorePoint], policy: RetentionPolicy, now_us: int, tz: tzinfo
) -> None:
    selection = select(points, policy, now_us, tz)
    ids = [p.id for p in newest_first(points)][::-1]
    assert set(selection.keep) | set(selection.remove) == set(ids), "lost or invented ids"
    assert len(selection.keep) + len(selection.remove) == len(ids), "an id kept and removed"
    assert [i for i in ids if i in selection.keep] == list(selection.keep), "keep not oldest first"
    assert [i for i in ids if i not in selection.keep] == selection.remove, (
        "remove not oldest first"
    )
    assert all(selection.keep.values()), "a kept point without a reason"
    fulls = newest_first(p for p in points if p.type == "full")
    assert not fulls or "newest full" in selection.keep[fulls[0].id]
    for kind in POINT_TYPES:
        n = policy.for_type(kind).keep_last
        for p in newest_first(p for p in points if p.type == kind)[:n]:
            assert "last" in selection.keep[p.id], f"{p} is among the {n} newest {kind}"
    assert all(p.id in selection.keep for p in points if p.time_us > now_us), "future removed"
    assert set(selection.keep) == expected_keep(points, policy, now_us, tz)


@given(point_lists, policies, times, st.sampled_from(PROPERTY_TZS), st.randoms())
def test_select_is_idempotent_and_ignores_input_order(
    points: list[RestorePoint], policy: RetentionPolicy, now_us: int, tz: tzinfo, rnd: Random
) -> None:
    selection = select(points, policy, now_us, tz)
    shuffled = list(points)
    rnd.shuffle(shuffled)
    assert select(shuffled, policy, now_us, tz) == selection
    remaining = [p for p in points if p.id in selection.keep]
    assert select(remaining, policy, now_us, tz) == Selection(keep=selection.keep, remove=[])
