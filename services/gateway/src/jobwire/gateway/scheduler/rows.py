"""Conversions between the scheduler's rows and the gateway's jobs and specs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from jobwire.gateway._models import Failure, JobRecord, JobState, NewJob
from jobwire.gateway.scheduler.models import HeldStatus, Schedule, ScheduledJob
from jobwire.gateway.scheduler.spec import JobTemplate, ScheduleSpec

# The state clients see of each status the scheduler answers for; an enqueued
# job is the provider's.
STATE_OF = {
    HeldStatus.SCHEDULED: JobState.SCHEDULED,
    HeldStatus.CLAIMED: JobState.SCHEDULED,
    HeldStatus.CANCELLED: JobState.CANCELLED,
}


def new_held(new: NewJob, now: datetime) -> ScheduledJob:
    """Return the row that holds a one-time job until its ``schedule_time``."""
    assert new.schedule_time is not None
    return ScheduledJob(
        id=new.id or uuid.uuid4().hex,
        queue=new.queue,
        type=new.type,
        payload=new.payload,
        content_type=new.content_type,
        attributes=new.attributes,
        max_retries=new.max_retries,
        timeout=new.timeout,
        deduplication_key=new.deduplication_key,
        request_id=new.request_id,
        schedule_time=datetime.fromtimestamp(new.schedule_time, UTC),
        status=HeldStatus.SCHEDULED,
        create_time=now,
        update_time=now,
        last_error="",
        priority=new.priority,
        concurrency_key=new.concurrency_key,
    )


def held_record(row: ScheduledJob) -> JobRecord:
    """Return the job record of a job the scheduler holds (or cancelled)."""
    cancelled = row.status is HeldStatus.CANCELLED
    update_time = row.update_time.timestamp()
    return JobRecord(
        id=row.id,
        queue=row.queue,
        type=row.type,
        payload=row.payload,
        content_type=row.content_type,
        attributes=dict(row.attributes),
        max_retries=row.max_retries,
        timeout=row.timeout,
        deduplication_key=row.deduplication_key,
        create_time=row.create_time.timestamp(),
        state=JobState.CANCELLED if cancelled else JobState.SCHEDULED,
        schedule_time=row.schedule_time.timestamp(),
        update_time=update_time,
        end_time=update_time if cancelled else None,
        last_error=(
            Failure(row.last_error, "CANCELLED", retryable=False, time=update_time)
            if cancelled
            else None
        ),
        priority=row.priority,
        concurrency_key=row.concurrency_key,
    )


def held_job(row: ScheduledJob) -> NewJob:
    """Return the job to hand to the provider for a held row."""
    return NewJob(
        queue=row.queue,
        type=row.type,
        payload=row.payload,
        content_type=row.content_type,
        attributes=dict(row.attributes),
        max_retries=row.max_retries,
        timeout=row.timeout,
        deduplication_key=row.deduplication_key,
        schedule_time=None,
        request_id=f"jobwire-scheduler:{row.id}",
        id=row.id,
        priority=row.priority,
        concurrency_key=row.concurrency_key,
    )


def template_of(row: Schedule) -> JobTemplate:
    """Return the job template of a stored schedule."""
    return JobTemplate(
        type=row.type,
        queue=row.queue,
        payload=row.payload,
        content_type=row.content_type,
        attributes=dict(row.attributes),
        max_retries=row.max_retries,
        timeout=row.timeout,
        priority=row.priority,
    )


def spec_of(row: Schedule) -> ScheduleSpec:
    """Return the client-settable fields of a stored schedule."""
    return ScheduleSpec(
        name=row.name,
        template=template_of(row),
        cron=row.cron,
        interval=timedelta(seconds=row.interval_seconds) if row.interval_seconds else None,
        time_zone=row.time_zone,
        misfire_policy=row.misfire_policy,
        paused=row.paused,
        description=row.description,
    )


def write_spec(row: Schedule, spec: ScheduleSpec) -> None:
    """Write the client-settable fields of ``spec`` into ``row``."""
    template = spec.template
    row.name = spec.name
    row.queue = template.queue
    row.type = template.type
    row.payload = template.payload
    row.content_type = template.content_type
    row.attributes = dict(template.attributes)
    row.max_retries = template.max_retries
    row.timeout = template.timeout
    row.priority = template.priority
    row.cron = spec.cron
    row.interval_seconds = spec.interval.total_seconds() if spec.interval else None
    row.time_zone = spec.time_zone
    row.misfire_policy = spec.misfire_policy
    row.paused = spec.paused
    row.description = spec.description


def new_schedule(spec: ScheduleSpec, now: datetime) -> Schedule:
    """Return a new schedule row for ``spec``."""
    row = Schedule(
        id=uuid.uuid4().hex,
        next_run_time=first_run(spec, now),
        last_run_time=None,
        last_error="",
        last_job_id="",
        create_time=now,
        update_time=now,
    )
    write_spec(row, spec)
    return row


def first_run(spec: ScheduleSpec, now: datetime) -> datetime | None:
    """Return the first occurrence after ``now``; None while paused."""
    return None if spec.paused else spec.timetable().next_after(now)
