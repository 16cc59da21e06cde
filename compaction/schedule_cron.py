"""When a job runs: a 5-field cron expression in a time zone (croniter does the calendar).

A *fire time* is an instant the cron expression names. Fire times are computed in the
schedule's time zone (the system's by default) and returned in UTC, so the scheduler compares
instants and never wall-clock readings. Daylight saving time follows classic cron:

- a wall-clock time that does not exist (clocks go forward) fires at the first minute after
  the gap (02:30 on a spring-forward night fires at 03:00);
- a wall-clock time that happens twice (clocks go back) fires once, the first time: the
  repeated hour is skipped, so a daily 02:30 job does not run twice that night.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from journal.errors import ConfigError

__all__ = ["CRON_ALIASES", "CRON_HELP", "Schedule", "check_cron", "local_timezone"]

CRON_ALIASES: Final = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly")
CRON_HELP: Final = (
    "use 5 fields: minute hour day-of-month month day-of-week, e.g. "
    '"0 3 * * *" (03:00 daily) or "0 2 * * 0" (02:00 on Sundays), or one of '
    + " ".join(CRON_ALIASES)
)

# Enough to step over a repeated DST hour of a once-a-minute schedule (60 fires) and more.
_MAX_STEPS: Final = 1000
# A fixed instant to probe expressions that parse but never fire ("0 0 31 2 *").
_PROBE: Final = datetime(2000, 1, 1, tzinfo=UTC)
_TICK: Final = timedelta(microseconds=1)


def check_cron(expr: str) -> str | None:
    """What is wrong with ``expr`` as a schedule (one phrase), or None if it is valid.

    Accepts 5-field expressions (names like ``sun`` and ``jan``, lists, ranges, steps, ``L``
    and ``#`` as croniter reads them) and the ``@`` aliases in ``CRON_ALIASES``; rejects the
    6- and 7-field forms with seconds or years, and expressions that never fire.
    """
    text = expr.strip()
    if text.startswith("@"):
        return None if text in CRON_ALIASES else f"is not a known alias ({' '.join(CRON_ALIASES)})"
    if len(text.split()) != 5:
        return f"has {len(text.split())} fields, not 5"
    try:
        croniter(text, _PROBE).get_next(datetime)
    except CroniterBadDateError:
        return "never fires (no date matches it)"
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # croniter's many kinds
        said = str(exc)
        if said.startswith(f"[{text}] "):  # croniter names the expression; so does our message
            return said.removeprefix(f"[{text}] ")
        return f"is invalid ({said})" if said else "is invalid"
    return None


def local_timezone() -> tzinfo:
    """The system's time zone with its DST rules: ``$TZ``, else /etc/localtime.

    Falls back to the current UTC offset (no DST rules) when neither names a zone file.
    """
    name = os.environ.get("TZ", "").removeprefix(":")
    try:
        if name:
            return ZoneInfo(name)
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError, KeyError):  # KeyError: ZoneInfoNotFoundError
        return datetime.now().astimezone().tzinfo or UTC


@dataclass(frozen=True)
class Schedule:
    """The cron schedule of one job; raises ConfigError (naming job and expression) if invalid.

    ``tz`` is the zone the expression is read in; all times in and out are aware datetimes,
    and results are in UTC.
    """

    job: str
    cron: str
    tz: tzinfo = field(default_factory=local_timezone)

    def __post_init__(self) -> None:
        if not self.job.strip():
            raise ConfigError(f"a scheduled job needs a name (cron {self.cron!r})")
        problem = check_cron(self.cron)
        if problem is not None:
            raise ConfigError(
                f"job {self.job!r}: cron expression {self.cron!r} {problem}; {CRON_HELP}"
            )

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after ``t``."""
        after = t.astimezone(UTC)
        steps = croniter(self.cron.strip(), t.astimezone(self.tz))
        for _ in range(_MAX_STEPS):
            fire = steps.get_next(datetime)
            if fire.astimezone(UTC) > after and not _repeated(fire):
                return fire.astimezone(UTC)
        raise ConfigError(f"job {self.job!r}: cron expression {self.cron!r} never fires")

    def last_at_or_before(self, t: datetime) -> datetime | None:
        """The latest fire time at or before ``t``, or None if there is none."""
        until = t.astimezone(UTC)
        steps = croniter(self.cron.strip(), (t + _TICK).astimezone(self.tz))
        for _ in range(_MAX_STEPS):
            try:
                fire = steps.get_prev(datetime)
            except ValueError:  # CroniterBadDateError: nothing that far back
                return None
            if fire.astimezone(UTC) <= until and not _repeated(fire):
                return fire.astimezone(UTC)
        return None


def _repeated(local: datetime) -> bool:
    """True for the second occurrence of a wall-clock time repeated when clocks go back."""
    return local.fold == 1 and local.utcoffset() != local.replace(fold=0).utcoffset()
