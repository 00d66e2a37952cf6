"""The database-backed scheduler: one-time jobs and recurring cron or interval jobs.

Storage is SQLAlchemy 2 async on SQLite (aiosqlite, one gateway) or
PostgreSQL (asyncpg, any number of gateways; each occurrence fires exactly
once). :class:`Scheduler` is the gateway's entry point.
"""

from __future__ import annotations

from jobwire.gateway.scheduler.runner import Clock, utc_now
from jobwire.gateway.scheduler.service import DEFAULT_DELAY_THRESHOLD, Scheduler
from jobwire.gateway.scheduler.sink import JobSink
from jobwire.gateway.scheduler.spec import JobTemplate, ScheduleSpec
from jobwire.gateway.scheduler.timetable import (
    MIN_INTERVAL,
    CronTimetable,
    IntervalTimetable,
    MisfirePolicy,
    Timetable,
    parse_cron,
    parse_time_zone,
)

__all__ = [
    "DEFAULT_DELAY_THRESHOLD",
    "MIN_INTERVAL",
    "Clock",
    "CronTimetable",
    "IntervalTimetable",
    "JobSink",
    "JobTemplate",
    "MisfirePolicy",
    "ScheduleSpec",
    "Scheduler",
    "Timetable",
    "parse_cron",
    "parse_time_zone",
    "utc_now",
]
