"""When schedules fire: cron and interval timetables, daylight saving and misfires.

Everything here is pure: no database, no clock. Instants are aware UTC
``datetime`` objects.

Cron expressions are read on the wall clock of the schedule's IANA time zone,
so ``0 9 * * *`` in ``America/New_York`` fires at 09:00 local time on every
day, whatever the UTC offset. Two wall-clock rules make daylight-saving days
well defined (they match cronsim and Vixie cron for fixed times):

* a local time that does not exist (02:30 on the spring-forward day) fires
  once, at the first valid instant after the gap (03:00 EDT);
* a local time that happens twice (01:30 on the fall-back day) fires once, at
  its first occurrence (01:30 EDT).

Interval timetables count elapsed time and ignore the time zone: they fire at
whole multiples of the interval since the Unix epoch (every 30 minutes fires
at :00 and :30 UTC), so every gateway and every restart agrees on the
occurrences without storing an anchor.
"""

from __future__ import annotations

import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

MIN_INTERVAL = timedelta(seconds=1)
"""Shortest interval a schedule may have."""

MAX_INTERVAL = timedelta(days=366)
"""Longest interval a schedule may have (beyond it, use cron)."""

# A cron time is skipped only when it falls in a DST overlap or gap; no zone
# has more than a few hours of those in a row, so this many consecutive
# skipped candidates means the expression never matches.
_MAX_SKIPPED = 1000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class MisfirePolicy(StrEnum):
    """What to do with an occurrence found more than ``misfire_grace`` late."""

    SKIP = "skip"
    """Drop it; fire next at the first occurrence after now (the default)."""
    RUN_ONCE = "run_once"
    """Fire once for everything missed, then continue on the timetable."""


class Timetable(ABC):
    """The occurrences of a schedule."""

    @abstractmethod
    def next_after(self, instant: datetime) -> datetime:
        """Return the first occurrence strictly after ``instant`` (aware), in UTC.

        Raises:
            ValueError: the timetable has no occurrence after ``instant``.
        """


@dataclass(frozen=True, slots=True)
class CronTimetable(Timetable):
    """A five-field cron expression read on the wall clock of ``zone``.

    Build it with :func:`parse_cron`, which validates the expression.
    """

    expression: str
    zone: ZoneInfo

    def next_after(self, instant: datetime) -> datetime:
        """Return the first occurrence strictly after ``instant``, in UTC.

        croniter walks naive local wall-clock times, where daylight saving
        does not exist; each candidate is then placed on the time line. A
        candidate that lands at or before ``instant`` (the second pass through
        a repeated hour, or a gap time already fired at the end of the gap) is
        skipped, which is what makes every local time fire exactly once.
        """
        local = instant.astimezone(self.zone).replace(tzinfo=None)
        candidates = croniter(self.expression, local, ret_type=datetime)
        try:
            for _ in range(_MAX_SKIPPED):
                candidate = _to_instant(candidates.get_next(), self.zone)
                if candidate > instant:
                    return candidate
        except CroniterError as error:
            raise ValueError(f"{self.expression!r} has no next occurrence: {error}") from None
        raise ValueError(f"{self.expression!r} has no next occurrence after {instant}")


@dataclass(frozen=True, slots=True)
class IntervalTimetable(Timetable):
    """Every ``interval`` of elapsed time, aligned on the Unix epoch."""

    interval: timedelta

    def next_after(self, instant: datetime) -> datetime:
        """Return the next whole multiple of the interval since the epoch after ``instant``."""
        step = self.interval // _MICROSECOND
        elapsed = (instant - _EPOCH) // _MICROSECOND
        return _EPOCH + timedelta(microseconds=(elapsed // step + 1) * step)


@dataclass(frozen=True, slots=True)
class Plan:
    """What the scheduler does with a due schedule."""

    fire_time: datetime | None
    """Occurrence to fire now, or None to fire nothing."""
    next_run_time: datetime
    """Occurrence to wait for next."""


def plan(
    timetable: Timetable,
    due: datetime,
    now: datetime,
    policy: MisfirePolicy,
    grace: timedelta,
) -> Plan:
    """Decide about a schedule whose occurrence ``due`` has come (``due <= now``).

    An occurrence at most ``grace`` late is merely late: it fires, and the
    schedule moves to the occurrence after it, so a short stall (a busy
    machine, a database failover) delays occurrences but loses none. One
    later than ``grace`` was missed (no gateway was running): ``SKIP`` drops
    it, ``RUN_ONCE`` fires it, and either way the schedule continues at the
    first occurrence after ``now``, so a day of downtime never turns into a
    burst of catch-up jobs.
    """
    if now - due <= grace:
        return Plan(due, timetable.next_after(due))
    fire = due if policy is MisfirePolicy.RUN_ONCE else None
    return Plan(fire, timetable.next_after(now))


def parse_time_zone(name: str) -> ZoneInfo:
    """Return the IANA time zone ``name``; empty means UTC.

    Raises:
        ValueError: no such time zone.
    """
    if not name:
        return ZoneInfo("UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError: names that are not relative keys ("../etc", "/UTC");
        # OSError: names the file system refuses as paths (too long, NUL bytes).
        raise ValueError(
            f"unknown time zone {name[:64]!r}; use an IANA name such as 'America/New_York'"
        ) from None


NICKNAMES = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
"""Cron nicknames accepted in place of five fields (croniter's: "@daily" is "0 0 * * *")."""


def parse_cron(expression: str, time_zone: str = "") -> CronTimetable:
    """Validate a five-field cron expression (or a nickname) and return its timetable.

    Raises:
        ValueError: the expression is not five valid fields, never matches,
            or the time zone is unknown.
    """
    zone = parse_time_zone(time_zone)
    nickname = expression.strip().lower()
    if nickname in NICKNAMES:
        # Kept as written, so the schedule reads back as the user wrote it;
        # croniter reads these itself.
        return CronTimetable(nickname, zone)
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 fields (minute hour day-of-month month day-of-week) or one of "
            f"{', '.join(NICKNAMES)}, got {len(fields)} fields in {expression[:64]!r}"
        )
    normalized = " ".join(fields)
    try:
        valid = croniter.is_valid(normalized)
    except CroniterError:
        valid = False
    if not valid:
        raise ValueError(f"invalid cron expression {normalized!r}")
    timetable = CronTimetable(normalized, zone)
    # Catches expressions that parse but never match, such as "0 0 30 2 *".
    timetable.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    return timetable


def check_interval(interval: timedelta) -> timedelta:
    """Return ``interval`` if a schedule may use it.

    Raises:
        ValueError: shorter than :data:`MIN_INTERVAL` or longer than
            :data:`MAX_INTERVAL`.
    """
    if interval < MIN_INTERVAL:
        raise ValueError(f"must be at least 1 second, got {interval.total_seconds():g}s")
    if interval > MAX_INTERVAL:
        raise ValueError(f"must be at most 366 days, got {interval}; use cron for longer")
    return interval


_FIRE_NAMESPACE = uuid.UUID("0b0e2a8c-6f4e-4c51-9a77-2f3d6c1b9e10")


def fire_job_id(schedule_id: str, fire_time: datetime) -> str:
    """Return the job id of a schedule's occurrence.

    Derived from the schedule and the occurrence alone, so a fire that is
    retried (after a crash or a lost connection) hands the provider the same
    job again instead of a second one.
    """
    key = f"{schedule_id}/{fire_time.astimezone(UTC).isoformat()}"
    return uuid.uuid5(_FIRE_NAMESPACE, key).hex


def _to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """Place a naive wall-clock time of ``zone`` on the UTC time line.

    A repeated time takes its first occurrence (``fold=0``); a time inside a
    spring-forward gap takes the first instant after the gap.
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 reads the time with the offset before the transition
    # and fold=1 with the one after; the transition lies between the two.
    other = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    before, after = min(first, other), max(first, other)
    offset = before.astimezone(zone).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            before = middle
        else:
            after = middle
    return after.replace(microsecond=0)
