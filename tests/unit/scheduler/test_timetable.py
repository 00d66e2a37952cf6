"""Next-run computation: cron across both 2026 DST changes in New York, intervals, misfires."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobwire.gateway.scheduler import (
    IntervalTimetable,
    MisfirePolicy,
    Timetable,
    parse_cron,
    parse_time_zone,
)
from jobwire.gateway.scheduler.timetable import fire_job_id, plan

NY = ZoneInfo("America/New_York")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NY, fold=fold)


def occurrences(timetable: Timetable, start: datetime, count: int) -> list[datetime]:
    found: list[datetime] = []
    for _ in range(count):
        start = timetable.next_after(start)
        found.append(start)
    return found


def wall(instants: list[datetime]) -> list[str]:
    return [i.astimezone(NY).strftime("%m-%d %H:%M %Z") for i in instants]


def test_nine_am_stays_nine_am_across_spring_forward() -> None:
    daily = parse_cron("0 9 * * *", "America/New_York")
    fires = occurrences(daily, local(2026, 3, 6, 12, 0), 3)
    assert fires == [utc(2026, 3, 7, 14, 0), utc(2026, 3, 8, 13, 0), utc(2026, 3, 9, 13, 0)]
    assert wall(fires) == ["03-07 09:00 EST", "03-08 09:00 EDT", "03-09 09:00 EDT"]


def test_nine_am_stays_nine_am_across_fall_back() -> None:
    daily = parse_cron("0 9 * * *", "America/New_York")
    fires = occurrences(daily, local(2026, 10, 30, 12, 0), 3)
    assert fires == [utc(2026, 10, 31, 13, 0), utc(2026, 11, 1, 14, 0), utc(2026, 11, 2, 14, 0)]
    assert wall(fires) == ["10-31 09:00 EDT", "11-01 09:00 EST", "11-02 09:00 EST"]


def test_repeated_local_time_on_fall_back_fires_once_at_its_first_occurrence() -> None:
    daily = parse_cron("30 1 * * *", "America/New_York")
    fires = occurrences(daily, local(2026, 10, 31, 12, 0), 2)
    # 01:30 happens twice on 11-01 (EDT, then EST an hour later): fire the first only.
    assert fires == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    assert wall(fires) == ["11-01 01:30 EDT", "11-02 01:30 EST"]


def test_after_the_first_pass_the_second_pass_of_the_hour_is_not_fired() -> None:
    daily = parse_cron("30 1 * * *", "America/New_York")
    # 01:10 EST is in the repeated hour, after 01:30 EDT already fired.
    inside_second_pass = local(2026, 11, 1, 1, 10, fold=1)
    assert inside_second_pass.astimezone(UTC) == utc(2026, 11, 1, 6, 10)
    assert daily.next_after(inside_second_pass) == utc(2026, 11, 2, 6, 30)


def test_missing_local_time_on_spring_forward_fires_once_at_the_end_of_the_gap() -> None:
    daily = parse_cron("30 2 * * *", "America/New_York")
    fires = occurrences(daily, local(2026, 3, 7, 12, 0), 2)
    # 02:30 does not exist on 03-08 (02:00 EST jumps to 03:00 EDT).
    assert fires == [utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 30)]
    assert wall(fires) == ["03-08 03:00 EDT", "03-09 02:30 EDT"]


def test_frequent_cron_never_repeats_or_goes_back_across_either_change() -> None:
    every_15 = parse_cron("*/15 * * * *", "America/New_York")
    for start in (local(2026, 3, 8, 0, 0), local(2026, 11, 1, 0, 0)):
        fires = occurrences(every_15, start, 24)
        assert all(a < b for a, b in itertools.pairwise(fires))
    spring = occurrences(every_15, local(2026, 3, 8, 1, 40), 3)
    assert wall(spring) == ["03-08 01:45 EST", "03-08 03:00 EDT", "03-08 03:15 EDT"]


def test_hourly_cron_fires_the_repeated_hour_once() -> None:
    hourly = parse_cron("0 * * * *", "America/New_York")
    fires = occurrences(hourly, local(2026, 11, 1, 0, 30), 3)
    assert wall(fires) == ["11-01 01:00 EDT", "11-01 02:00 EST", "11-01 03:00 EST"]


def test_cron_defaults_to_utc_and_is_normalized() -> None:
    timetable = parse_cron("  0   9 * *   1-5 ")
    assert timetable.expression == "0 9 * * 1-5"
    assert timetable.zone == ZoneInfo("UTC")
    # 2026-03-07 is a Saturday: next weekday 09:00 is Monday.
    assert timetable.next_after(utc(2026, 3, 7, 12, 0)) == utc(2026, 3, 9, 9, 0)


@pytest.mark.parametrize(
    ("nickname", "after", "expected"),
    [
        ("@hourly", utc(2026, 3, 7, 12, 30), utc(2026, 3, 7, 13, 0)),
        ("@daily", utc(2026, 3, 7, 12, 30), utc(2026, 3, 8, 0, 0)),
        ("@WEEKLY", utc(2026, 3, 7, 12, 30), utc(2026, 3, 8, 0, 0)),  # Sunday midnight
    ],
)
def test_cron_nicknames(nickname: str, after: datetime, expected: datetime) -> None:
    timetable = parse_cron(nickname)
    assert timetable.expression == nickname.lower()
    assert timetable.next_after(after) == expected


def test_next_after_is_strictly_after() -> None:
    daily = parse_cron("0 9 * * *")
    assert daily.next_after(utc(2026, 1, 1, 9, 0)) == utc(2026, 1, 2, 9, 0)


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("0 9 * * * *", "expected 5 fields"),
        ("@fortnightly", "or one of @hourly, @daily"),
        ("61 * * * *", "invalid cron"),
        ("0 25 * * *", "invalid cron"),
        ("H * * * *", "invalid cron"),
        ("0 0 30 2 *", "no next occurrence"),
        ("", "expected 5 fields"),
    ],
)
def test_invalid_cron_is_rejected(expression: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_cron(expression)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "../etc/passwd", "/UTC", "utc+1"])
def test_unknown_time_zone_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_time_zone(name)


def test_empty_time_zone_is_utc() -> None:
    assert parse_time_zone("") == ZoneInfo("UTC")


def test_interval_is_aligned_on_the_epoch() -> None:
    half_hour = IntervalTimetable(timedelta(minutes=30))
    assert half_hour.next_after(utc(2026, 1, 1, 10, 7)) == utc(2026, 1, 1, 10, 30)
    assert half_hour.next_after(utc(2026, 1, 1, 10, 30)) == utc(2026, 1, 1, 11, 0)
    # Elapsed time: the time zone's DST change does not shift it.
    fires = occurrences(half_hour, utc(2026, 3, 8, 6, 0), 4)
    assert [b - a for a, b in itertools.pairwise(fires)] == [timedelta(minutes=30)] * 3


def test_fractional_interval() -> None:
    every = IntervalTimetable(timedelta(seconds=1.5))
    start = datetime(1970, 1, 1, 0, 0, 3, tzinfo=UTC)
    assert occurrences(every, start, 2) == [
        start + timedelta(seconds=1.5),
        start + timedelta(seconds=3),
    ]


GRACE = timedelta(seconds=60)
HOURLY = IntervalTimetable(timedelta(hours=1))


def test_on_time_occurrence_fires_and_the_next_one_is_scheduled() -> None:
    due = utc(2026, 1, 1, 9, 0)
    decision = plan(HOURLY, due, due + timedelta(milliseconds=5), MisfirePolicy.SKIP, GRACE)
    assert decision.fire_time == due
    assert decision.next_run_time == utc(2026, 1, 1, 10, 0)


def test_late_occurrences_within_grace_each_fire_once() -> None:
    every_10s = IntervalTimetable(timedelta(seconds=10))
    due = utc(2026, 1, 1, 9, 0)
    now = due + timedelta(seconds=25)  # a stall: three occurrences are due
    fired: list[datetime] = []
    while due <= now:
        decision = plan(every_10s, due, now, MisfirePolicy.SKIP, GRACE)
        assert decision.fire_time is not None
        fired.append(decision.fire_time)
        due = decision.next_run_time
    assert [f.second for f in fired] == [0, 10, 20]
    assert due == utc(2026, 1, 1, 9, 0) + timedelta(seconds=30)


def test_exactly_grace_late_still_fires() -> None:
    due = utc(2026, 1, 1, 9, 0)
    assert plan(HOURLY, due, due + GRACE, MisfirePolicy.SKIP, GRACE).fire_time == due


def test_skip_drops_missed_occurrences_after_downtime() -> None:
    due = utc(2026, 1, 1, 9, 0)
    now = utc(2026, 1, 2, 9, 30)  # a day down: 25 hourly occurrences missed
    decision = plan(HOURLY, due, now, MisfirePolicy.SKIP, GRACE)
    assert decision.fire_time is None
    assert decision.next_run_time == utc(2026, 1, 2, 10, 0)


def test_run_once_fires_once_for_everything_missed() -> None:
    due = utc(2026, 1, 1, 9, 0)
    now = utc(2026, 1, 2, 9, 30)
    decision = plan(HOURLY, due, now, MisfirePolicy.RUN_ONCE, GRACE)
    assert decision.fire_time == due
    assert decision.next_run_time == utc(2026, 1, 2, 10, 0)


def test_a_late_cron_in_a_time_zone_resumes_on_local_time() -> None:
    daily = parse_cron("0 9 * * *", "America/New_York")
    due = utc(2026, 3, 7, 14, 0)
    decision = plan(daily, due, utc(2026, 3, 8, 20, 0), MisfirePolicy.SKIP, GRACE)
    assert decision.fire_time is None
    assert wall([decision.next_run_time]) == ["03-09 09:00 EDT"]


def test_fire_job_id_is_deterministic_per_schedule_and_occurrence() -> None:
    at = utc(2026, 1, 1, 9, 0)
    same = fire_job_id("s1", at.astimezone(NY))
    assert fire_job_id("s1", at) == same
    assert len(same) == 32
    assert fire_job_id("s1", at + timedelta(seconds=1)) != same
    assert fire_job_id("s2", at) != same


@pytest.mark.parametrize("name", ["Mars/Base", "../etc/passwd", "x" * 5000, "Europe/\x00Paris"])
def test_unknown_time_zones_are_value_errors(name: str) -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_time_zone(name)
