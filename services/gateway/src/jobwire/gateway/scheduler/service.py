"""The scheduler as the rest of the gateway sees it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime

from jobwire.gateway._config import SchedulerSettings
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._models import Failure, JobRecord, JobState, NewJob
from jobwire.gateway.providers.base import QueueProvider
from jobwire.gateway.scheduler.models import HeldStatus, Schedule, ScheduledJob
from jobwire.gateway.scheduler.runner import Clock, Runner, utc_now
from jobwire.gateway.scheduler.spec import ScheduleSpec
from jobwire.gateway.scheduler.store import SchedulerStore, spec_of

DEFAULT_DELAY_THRESHOLD = 15 * 60.0
"""Seconds ahead beyond which jobs are held by the scheduler when the provider
has no native limit: such jobs then survive a gateway restart."""


class Scheduler:
    """Database-backed one-time and recurring jobs, feeding a queue provider.

    ``await start()`` creates missing tables and starts the runner;
    ``await stop()`` stops it. Every method that stores something due wakes
    the runner when that is sooner than its current sleep.

    Args:
        settings: the ``[scheduler]`` table.
        provider: where due jobs go.
        clock: current time as an aware UTC datetime; tests pass a fake one
            and call :meth:`wake` after moving it.
    """

    def __init__(
        self,
        settings: SchedulerSettings,
        provider: QueueProvider,
        *,
        clock: Clock = utc_now,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.store = SchedulerStore.from_url(settings.database_url)
        self.runner = Runner(self.store, provider, settings, clock, metrics)
        self.delay_threshold = _delay_threshold(settings, provider)
        """Jobs due further ahead than this many seconds are held here."""

    @property
    def clock(self) -> Clock:
        """The scheduler's source of the current time."""
        return self.runner.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.runner.clock = clock

    async def start(self) -> None:
        """Create or check the tables, then start the runner."""
        await self.store.open()
        self.runner.start()

    async def stop(self) -> None:
        """Stop the runner and close the database connections."""
        await self.runner.stop()
        await self.store.close()

    def wake(self) -> None:
        """Make the runner look at the database now."""
        self.runner.wake()

    # One-time jobs -----------------------------------------------------------

    async def hold(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs until their ``schedule_time``; same result shape as ``provider.enqueue``."""
        rows = await self.store.hold(jobs, self.clock())
        self.runner.notify(min((row.schedule_time for row, dup in rows if not dup), default=None))
        return [(held_record(row), duplicate) for row, duplicate in rows]

    async def get_job(self, job_id: str) -> JobRecord | None:
        """Return a job the scheduler still answers for (held or cancelled), else None."""
        row = await self.store.get_held(job_id)
        if row is None or row.status is HeldStatus.ENQUEUED:
            return None
        return held_record(row)

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord | None:
        """Cancel a held job; None when the scheduler does not hold it."""
        row = await self.store.cancel_held(job_id, reason, self.clock())
        if row is None:
            return None
        record = held_record(row)
        # WatchJob streams of the job listen on the provider's events.
        self.provider.events.publish(record)
        return record

    # Schedules ---------------------------------------------------------------

    async def create_schedule(self, spec: ScheduleSpec) -> Schedule:
        """Store a new schedule; raises ``ScheduleExistsError`` when the name is taken."""
        row = await self.store.create_schedule(spec, self.clock())
        self.runner.notify(row.next_run_time)
        return row

    async def update_schedule(
        self,
        name: str,
        change: Callable[[ScheduleSpec | None], ScheduleSpec],
        *,
        allow_missing: bool = False,
    ) -> tuple[Schedule, bool]:
        """Change a schedule under a row lock; see :meth:`SchedulerStore.update_schedule`."""
        row, created = await self.store.update_schedule(
            name, change, self.clock(), allow_missing=allow_missing
        )
        self.runner.notify(row.next_run_time)
        return row, created

    async def get_schedule(self, name: str) -> Schedule:
        """Return a schedule; raises ``ScheduleNotFoundError``."""
        return await self.store.get_schedule(name)

    async def list_schedules(self, after: str, limit: int) -> tuple[list[Schedule], bool]:
        """Return schedules named after ``after`` by name, and whether more follow."""
        return await self.store.list_schedules(after, limit)

    async def delete_schedule(self, name: str) -> bool:
        """Delete a schedule; False when there was none."""
        return await self.store.delete_schedule(name)

    async def pause_schedule(self, name: str) -> Schedule:
        """Stop a schedule from firing; raises ``ScheduleNotFoundError``."""
        return await self.store.set_paused(name, True, self.clock())

    async def resume_schedule(self, name: str) -> Schedule:
        """Resume a schedule at its first occurrence after now."""
        row = await self.store.set_paused(name, False, self.clock())
        self.runner.notify(row.next_run_time)
        return row

    async def trigger_schedule(self, name: str) -> JobRecord:
        """Enqueue the schedule's job now, outside its timetable and with a new id."""
        row = await self.store.get_schedule(name)
        job = spec_of(row).template.new_job(uuid.uuid4().hex, row.name)
        [(record, _)] = await self.provider.enqueue([job])
        return record


def held_record(row: ScheduledJob) -> JobRecord:
    """Return the job record of a job the scheduler holds (or cancelled)."""
    cancelled = row.status is HeldStatus.CANCELLED
    update_time = _epoch(row.update_time)
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
        create_time=_epoch(row.create_time),
        state=JobState.CANCELLED if cancelled else JobState.SCHEDULED,
        schedule_time=_epoch(row.schedule_time),
        update_time=update_time,
        end_time=update_time if cancelled else None,
        last_error=(
            Failure(row.last_error, "CANCELLED", retryable=False, time=update_time)
            if cancelled
            else None
        ),
    )


def _delay_threshold(settings: SchedulerSettings, provider: QueueProvider) -> float:
    if settings.delay_threshold is not None:
        return settings.delay_threshold.total_seconds()
    if provider.max_native_delay is not None:
        return provider.max_native_delay
    return DEFAULT_DELAY_THRESHOLD


def _epoch(value: datetime) -> float:
    return value.timestamp()
