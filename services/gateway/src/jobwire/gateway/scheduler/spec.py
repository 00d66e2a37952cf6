"""What a client sets on a schedule, validated, independent of protobuf and SQL."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from jobwire.gateway._models import NewJob
from jobwire.gateway.scheduler.timetable import (
    IntervalTimetable,
    MisfirePolicy,
    Timetable,
    parse_cron,
)


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

    def new_job(self, job_id: str, schedule: str) -> NewJob:
        """Return the job to enqueue now, with ``job_id`` preassigned.

        The request id is derived from the job id: a provider that remembers
        request ids then ignores a retried hand-over of the same job.
        """
        return NewJob(
            queue=self.queue,
            type=self.type,
            payload=self.payload,
            content_type=self.content_type,
            attributes=dict(self.attributes),
            max_retries=self.max_retries,
            timeout=self.timeout,
            deduplication_key="",
            schedule_time=None,
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
