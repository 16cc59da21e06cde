"""Retention: which restore points to keep, as a pure function of points, a policy and now.

A *restore point* is a backup: a ``"full"`` snapshot or an ``"incremental"`` one. ``select``
reads no clock and touches no storage: the caller passes ``now_us`` and deletes what the
returned ``Selection`` names (a prune). Rules follow restic's ``forget``; ``select``'s
docstring defines them exactly.

``RetentionPolicy.point_in_time_s`` is only carried here: the caller uses it to decide which
journal segments must stay so that every second of that window remains restorable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final, Literal, NamedTuple

from journal.errors import ConfigError

__all__ = [
    "DEFAULT_FULL_POLICY",
    "DEFAULT_INCREMENTAL_POLICY",
    "DEFAULT_POINT_IN_TIME_S",
    "POINT_TYPES",
    "PointType",
    "RestorePoint",
    "RetentionPolicy",
    "Selection",
    "TypePolicy",
    "format_duration",
    "parse_duration",
    "select",
]

PointType = Literal["full", "incremental"]
POINT_TYPES: Final[tuple[PointType, ...]] = ("full", "incremental")

_UNITS: Final = (("w", 7 * 86_400), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_DURATION = re.compile(r"(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")
_DURATION_FORMS = (
    "a whole number and a unit (w, d, h, m, s), units largest first and each at most once, "
    "e.g. '90m', '12h', '30d', '2w', '1d12h', or '0'"
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def parse_duration(text: str) -> int:
    """Seconds in a duration: ``"90m"``, ``"12h"``, ``"30d"``, ``"2w"``, ``"1d12h"``, ``"0"``.

    Units are w (7 days), d (86,400 s), h, m and s: exact elapsed time, not calendar days. A
    bare number other than ``0`` is refused because its unit would be a guess. Raises
    ``ConfigError`` naming the text and the allowed forms.
    """
    stripped = text.strip()
    if stripped == "0":
        return 0
    match = _DURATION.fullmatch(stripped)
    if not stripped or match is None:
        raise ConfigError(f"invalid duration {text!r}: use {_DURATION_FORMS}")
    return sum(int(n) * size for n, (_, size) in zip(match.groups(), _UNITS, strict=True) if n)


def format_duration(seconds: int) -> str:
    """The shortest ``parse_duration`` text for ``seconds`` in d/h/m/s units (``"0"`` for 0)."""
    if seconds < 0:
        raise ConfigError(f"a duration cannot be negative, got {seconds} s")
    parts = []
    for unit, size in _UNITS[1:]:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0"


def _check_count(name: str, value: object) -> None:
    """Refuse a policy number that is not a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"retention {name} must be a whole number >= 0, not {value!r}")


@dataclass(frozen=True)
class TypePolicy:
    """How many restore points of one type to keep; all zero keeps nothing by these rules.

    ``keep_last``: the N newest. ``keep_hourly`` ... ``keep_yearly``: the newest point in each
    of the N newest hours/days/ISO weeks/months/years that have points. ``keep_within_s``:
    every point younger than this many seconds. See ``select`` for the exact definitions.
    """

    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within_s: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_count(f.name, getattr(self, f.name))


DEFAULT_FULL_POLICY: Final = TypePolicy(keep_last=1, keep_within_s=30 * 86_400)
DEFAULT_INCREMENTAL_POLICY: Final = TypePolicy(keep_within_s=7 * 86_400)
DEFAULT_POINT_IN_TIME_S: Final = 7 * 86_400


@dataclass(frozen=True)
class RetentionPolicy:
    """A ``TypePolicy`` per backup type plus the point-in-time window.

    Defaults: full snapshots for 30 days (and always the newest), incrementals for 7 days,
    every second restorable for the last 7 days (``point_in_time_s``, used by the caller).
    """

    full: TypePolicy = DEFAULT_FULL_POLICY
    incremental: TypePolicy = DEFAULT_INCREMENTAL_POLICY
    point_in_time_s: int = DEFAULT_POINT_IN_TIME_S

    def __post_init__(self) -> None:
        _check_count("point_in_time_s", self.point_in_time_s)

    def for_type(self, point_type: PointType) -> TypePolicy:
        """The rules for ``point_type``."""
        return self.full if point_type == "full" else self.incremental


class RestorePoint(NamedTuple):
    """A backup that can be restored: unique ``id``, UTC microseconds, ``"full"`` or not."""

    id: str
    time_us: int
    type: PointType


@dataclass(frozen=True)
class Selection:
    """What ``select`` decided.

    ``keep`` maps each kept id to the reasons, in rule order; ``remove`` lists the other ids.
    Both are ordered oldest first (by time, then id).
    """

    keep: dict[str, list[str]]
    remove: list[str]


def select(
    points: Iterable[RestorePoint],
    policy: RetentionPolicy,
    now_us: int,
    tz: tzinfo | None = None,
) -> Selection:
    """Split ``points`` into those ``policy`` keeps (with reasons) and those to remove.

    Rules apply to each type separately, over that type's points only; a point is kept if any
    rule keeps it. Order is newest first by ``(time_us, id)``, so equal times are broken by id.

    - ``keep_last`` N (reason ``"last"``): the N newest points.
    - ``keep_hourly`` ... ``keep_yearly`` N (reasons ``"hourly"``, ``"daily"``, ``"weekly"``,
      ``"monthly"``, ``"yearly"``): each point's wall-clock hour, date, ISO week (ISO year +
      week, Monday to Sunday), month or year in ``tz`` (``None``: the system's local zone) is
      its bucket; take the N buckets whose newest points are newest, and keep the newest point
      in each. A repeated wall-clock hour at a DST change is one hourly bucket.
    - ``keep_within_s`` D (reason ``"within <D>"``, e.g. ``"within 7d"``): every point with
      ``now_us - time_us < D`` seconds; a point exactly D old is not kept. D is elapsed time,
      so across a DST change ``7d`` is still 7 x 24 hours.
    - Safety, whatever the policy: the newest full point (``"newest full"``) and every point
      newer than ``now_us`` (``"future"``, clock skew) are kept.

    Raises ``ConfigError`` for a duplicate id, an unknown type or a time outside years 1-9999.
    """
    oldest_first = _validated(points)
    newest_first = oldest_first[::-1]
    reasons: dict[str, list[str]] = {}
    for point_type in POINT_TYPES:
        of_type = [p for p in newest_first if p.type == point_type]
        for point, reason in _type_reasons(of_type, policy.for_type(point_type), now_us, tz):
            reasons.setdefault(point.id, []).append(reason)
    for point, reason in _safety_reasons(newest_first, now_us):
        reasons.setdefault(point.id, []).append(reason)
    return Selection(
        keep={p.id: reasons[p.id] for p in oldest_first if p.id in reasons},
        remove=[p.id for p in oldest_first if p.id not in reasons],
    )


def _validated(points: Iterable[RestorePoint]) -> list[RestorePoint]:
    """The points oldest first; refuses duplicate ids and unknown types."""
    ordered = sorted(points, key=lambda p: (p.time_us, p.id))
    seen: set[str] = set()
    for p in ordered:
        if p.type not in POINT_TYPES:
            raise ConfigError(
                f"restore point {p.id!r} has type {p.type!r}; use 'full' or 'incremental'"
            )
        if p.id in seen:
            raise ConfigError(f"restore point id {p.id!r} appears twice; ids must be unique")
        seen.add(p.id)
    return ordered


def _type_reasons(
    newest_first: Sequence[RestorePoint], policy: TypePolicy, now_us: int, tz: tzinfo | None
) -> Iterator[tuple[RestorePoint, str]]:
    """(point, reason) for each rule of ``policy`` that keeps a point, in rule order."""
    for point in newest_first[: policy.keep_last]:
        yield point, "last"
    calendar = [(name, n, bucket) for name, n, bucket in _calendar_rules(policy) if n]
    if calendar:
        local = [_local_time(p, tz) for p in newest_first]
        for name, count, bucket in calendar:
            for i in _newest_per_bucket([bucket(t) for t in local], count):
                yield newest_first[i], name
    if policy.keep_within_s:
        reason = f"within {format_duration(policy.keep_within_s)}"
        window_us = policy.keep_within_s * 1_000_000
        for point in newest_first:
            if now_us - point.time_us < window_us:
                yield point, reason


def _safety_reasons(
    newest_first: Sequence[RestorePoint], now_us: int
) -> Iterator[tuple[RestorePoint, str]]:
    """The newest full point, and every point in the future, whatever the policy says."""
    newest_full = next((p for p in newest_first if p.type == "full"), None)
    if newest_full is not None:
        yield newest_full, "newest full"
    for point in newest_first:
        if point.time_us > now_us:
            yield point, "future"


_Bucket = Callable[[datetime], tuple[int, ...]]


def _calendar_rules(policy: TypePolicy) -> tuple[tuple[str, int, _Bucket], ...]:
    """(reason, count, bucket of a local time) for the hourly ... yearly rules."""
    return (
        ("hourly", policy.keep_hourly, lambda t: (t.year, t.month, t.day, t.hour)),
        ("daily", policy.keep_daily, lambda t: (t.year, t.month, t.day)),
        ("weekly", policy.keep_weekly, lambda t: tuple(t.isocalendar())[:2]),
        ("monthly", policy.keep_monthly, lambda t: (t.year, t.month)),
        ("yearly", policy.keep_yearly, lambda t: (t.year,)),
    )


def _newest_per_bucket(buckets_newest_first: Sequence[tuple[int, ...]], count: int) -> list[int]:
    """Indexes of the first (newest) entry of each of the first ``count`` distinct buckets."""
    seen: set[tuple[int, ...]] = set()
    picked: list[int] = []
    for i, bucket in enumerate(buckets_newest_first):
        if len(picked) == count:
            break
        if bucket not in seen:
            seen.add(bucket)
            picked.append(i)
    return picked


def _local_time(point: RestorePoint, tz: tzinfo | None) -> datetime:
    """``point``'s time on the wall clock of ``tz`` (``None``: the system's zone)."""
    try:
        return (_EPOCH + timedelta(microseconds=point.time_us)).astimezone(tz)
    except OverflowError as exc:
        raise ConfigError(
            f"restore point {point.id!r} has time_us {point.time_us}, outside years 1-9999"
        ) from exc
