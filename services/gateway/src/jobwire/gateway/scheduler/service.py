"""The scheduler as the rest of the gateway sees it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime

from jobwire.gateway._config import SchedulerSettings
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._models import JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway.scheduler.models import HeldStatus, Schedule
from jobwire.gateway.scheduler.rows import held_record, spec_of
from jobwire.gateway.scheduler.runner import Clock, Runner, utc_now
from jobwire.gateway.scheduler.sink import JobSink
from jobwire.gateway.scheduler.spec import ScheduleSpec
from jobwire.gateway.scheduler.store import SchedulerStore

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
        sink: where due jobs go.
        clock: current time as an aware UTC datetime; tests pass a fake one
            and call :meth:`wake` after moving it.
    """

    def __init__(
        self,
        settings: SchedulerSettings,
        sink: JobSink,
        *,
        clock: Clock = utc_now,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.store = SchedulerStore.from_url(settings.database_url)
        self.runner = Runner(self.store, sink, settings, clock, metrics)
        self.delay_threshold = _delay_threshold(settings, sink)
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
        """Store jobs until their ``schedule_time``; same result shape as ``sink.submit``."""
        results = await self.store.hold(jobs, self.clock())
        due = min((job.schedule_time or 0.0 for job, dup in results if not dup), default=None)
        self.runner.notify(None if due is None else datetime.fromtimestamp(due, UTC))
        return results

    async def get_job(self, job_id: str) -> JobRecord | None:
        """Return a job the scheduler still answers for (held or cancelled), else None."""
        row = await self.store.get_held(job_id)
        if row is None or row.status is HeldStatus.ENQUEUED:
            return None
        return held_record(row)

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The held jobs that hold these deduplication keys."""
        return await self.store.key_holders(keys)

    async def list_jobs(
        self, where: JobFilter, limit: int, after: tuple[float, str] | None
    ) -> list[JobRecord]:
        """Held (and cancelled) jobs, newest first, created before ``after`` (time, id)."""
        before = None if after is None else (datetime.fromtimestamp(after[0], UTC), after[1])
        return await self.store.list_held(where, limit, before)

    async def counts(self, queue: str | None) -> dict[str, dict[JobState, int]]:
        """Per queue, the jobs the scheduler answers for, by state."""
        return await self.store.count_held(queue)

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord | None:
        """Cancel a held job; None when the scheduler does not hold it."""
        row = await self.store.cancel_held(job_id, reason, self.clock())
        if row is None:
            return None
        return held_record(row)

    async def purge_held(self, selector: JobSelector, *, validate_only: bool) -> int:
        """Delete (or count) the held and cancelled jobs ``selector`` matches."""
        return await self.store.purge_held(selector, validate_only=validate_only)

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
        job = spec_of(row).template.new_job(uuid.uuid4().hex, row.name, self.clock())
        [(record, _)] = await self.sink.submit([job])
        return record


def _delay_threshold(settings: SchedulerSettings, sink: JobSink) -> float:
    if settings.delay_threshold is not None:
        return settings.delay_threshold.total_seconds()
    if sink.max_native_delay is not None:
        return sink.max_native_delay
    return DEFAULT_DELAY_THRESHOLD
