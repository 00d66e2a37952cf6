"""What a client sets on a schedule, validated, independent of protobuf and SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jobwire.gateway._models import DEFAULT_PRIORITY, NewJob
from jobwire.gateway.scheduler.timetable import (
    IntervalTimetable,
    MisfirePolicy,
    Timetable,
    parse_cron,
)

SCHEDULE_ATTRIBUTE = "jobwire.schedule"
"""Attribute of a fired job: the name of the schedule that fired it."""
OCCURRENCE_ATTRIBUTE = "jobwire.occurrence_time"
"""Attribute of a fired job: its nominal occurrence (RFC 3339, UTC); the
time of the call for ``TriggerSchedule``."""


def rfc3339(moment: datetime) -> str:
    """``2026-12-07T09:00:00Z``: ``moment`` in UTC, as RFC 3339."""
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every time the scheduler stores is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class JobTemplate:
    """The job a schedule enqueues at each occurrence (already validated)."""

    type: str
    queue: str = "default"
    payload: bytes = b""
    content_type: str = "application/octet-stream"
    attributes: dict[str, str] = field(default_factory=dict)
    max_retries: int = 3
    timeout: float | None = None
    """Seconds one attempt may run; None means the gateway's default."""
    priority: int = DEFAULT_PRIORITY

    def new_job(self, job_id: str, schedule: str, occurrence: datetime) -> NewJob:
        """Return the job of ``occurrence`` to enqueue now, with ``job_id`` preassigned.

        The job says which occurrence it is, so a handler knows the period it
        processes (a daily report needs its date): the attributes
        ``jobwire.schedule`` and ``jobwire.occurrence_time`` (RFC 3339, UTC)
        and ``schedule_time`` = the occurrence. The request id is derived from
        the job id: a provider that remembers request ids then ignores a
        retried hand-over of the same job.
        """
        return NewJob(
            queue=self.queue,
            type=self.type,
            payload=self.payload,
            content_type=self.content_type,
            attributes={
                **self.attributes,
                SCHEDULE_ATTRIBUTE: schedule,
                OCCURRENCE_ATTRIBUTE: rfc3339(occurrence),
            },
            max_retries=self.max_retries,
            timeout=self.timeout,
            priority=self.priority,
            deduplication_key="",
            # Never in the future, so the job is ready at once.
            schedule_time=_utc(occurrence).timestamp(),
            request_id=f"jobwire-scheduler:{job_id}",
            schedule=schedule,
            id=job_id,
        )


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """Every field of a schedule that a client sets (``jobwire.v1.Schedule`` minus outputs).

    The servicer validates every value before building one; the constructor
    only insists that exactly one of ``cron`` and ``interval`` is set.
    """

    name: str
    template: JobTemplate
    cron: str | None = None
    interval: timedelta | None = None
    time_zone: str = "UTC"
    misfire_policy: MisfirePolicy = MisfirePolicy.SKIP
    paused: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.interval is None):
            raise ValueError("a schedule has exactly one of cron and interval")

    def timetable(self) -> Timetable:
        """Return the timetable of ``cron`` in ``time_zone``, or of ``interval``.

        Raises:
            ValueError: the cron expression or time zone is invalid.
        """
        if self.cron is not None:
            return parse_cron(self.cron, self.time_zone)
        assert self.interval is not None
        return IntervalTimetable(self.interval)

    def same_timing(self, other: ScheduleSpec) -> bool:
        """Whether ``other`` fires at the same times (so ``next_run_time`` stays)."""
        return (self.cron, self.interval, self.time_zone, self.paused) == (
            other.cron,
            other.interval,
            other.time_zone,
            other.paused,
        )
