"""The runner against the memory provider: wake-ups, hand-over, failures, lost connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from integration.scheduler.helpers import FakeClock
from sqlalchemy import select
from sqlalchemy.engine import make_url

from jobwire.gateway import GatewaySettings, MemoryProviderSettings, SchedulerSettings
from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway._service import JobService
from jobwire.gateway.providers.memory import MemoryProvider
from jobwire.gateway.scheduler import JobTemplate, Scheduler, ScheduleSpec
from jobwire.gateway.scheduler.models import FireStatus, ScheduleFire
from jobwire.gateway.scheduler.runner import Clock, utc_now

from postgres import psql, terminate_connections
from support import eventually, new_job

StartScheduler = Callable[..., Awaitable[Scheduler]]
ANY_JOB = JobFilter()


class FlakyProvider(MemoryProvider):
    """A memory provider that refuses every enqueue while ``broken``."""

    broken = False

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        if self.broken:
            raise ConnectionError("queue backend unreachable")
        return await super().insert(jobs)


def every(name: str, seconds: float) -> ScheduleSpec:
    return ScheduleSpec(
        name=name, template=JobTemplate(type="tick"), interval=timedelta(seconds=seconds)
    )


@pytest.fixture
def provider() -> FlakyProvider:
    return FlakyProvider(MemoryProviderSettings(), JobEvents())


@pytest.fixture
async def scheduler_factory(provider: FlakyProvider) -> AsyncIterator[StartScheduler]:
    """Start schedulers feeding ``provider``; all are stopped after the test."""
    started: list[Scheduler] = []

    async def start(database_url: str, clock: Clock = utc_now) -> Scheduler:
        settings = SchedulerSettings(database_url=database_url, poll_interval=timedelta(minutes=1))
        # The gateway's own enqueue path, without a scheduler of its own.
        sink = JobService(
            GatewaySettings(scheduler=SchedulerSettings(enabled=False)), provider, provider.events
        )
        scheduler = Scheduler(settings, sink, clock=clock)
        await scheduler.start()
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        await scheduler.stop()


async def in_provider(provider: MemoryProvider, job_id: str) -> bool:
    return await provider.get(job_id) is not None


async def test_held_job_moves_at_its_time_with_its_id(
    database_url: str, scheduler_factory: StartScheduler, provider: FlakyProvider
) -> None:
    clock = FakeClock()
    scheduler: Scheduler = await scheduler_factory(database_url, clock)
    [(held, _)] = await scheduler.hold(
        [new_job(type="later", schedule_time=(clock.now + timedelta(hours=1)).timestamp())]
    )
    assert held.state is JobState.SCHEDULED
    clock.advance(minutes=59, seconds=59)
    scheduler.wake()
    await asyncio.sleep(0.2)
    assert not await in_provider(provider, held.id)  # never early
    clock.advance(seconds=1)
    scheduler.wake()
    await eventually(lambda: in_provider(provider, held.id))
    job = await provider.get(held.id)
    assert job is not None
    assert job.state is JobState.PENDING
    assert job.type == "later"

    async def confirmed() -> bool:  # the hand-over is confirmed just after the enqueue
        return await scheduler.get_job(held.id) is None  # the provider answers for it now

    await eventually(confirmed)


async def test_a_fired_job_carries_its_schedule_and_occurrence(
    database_url: str, scheduler_factory: StartScheduler, provider: FlakyProvider
) -> None:
    clock = FakeClock()  # 2026-06-01 12:00:00 UTC
    scheduler: Scheduler = await scheduler_factory(database_url, clock)
    await scheduler.create_schedule(every("tick", 10))
    clock.advance(seconds=13)  # found 3 s late: the job still names 12:00:10
    scheduler.wake()

    async def fired() -> bool:
        return bool((await provider.list_jobs(ANY_JOB, 10, None))[0])

    await eventually(fired)
    [job] = (await provider.list_jobs(ANY_JOB, 10, None))[0]
    assert job.attributes == {
        "jobwire.schedule": "tick",
        "jobwire.occurrence_time": "2026-06-01T12:00:10Z",
    }
    assert job.schedule_time == datetime(2026, 6, 1, 12, 0, 10, tzinfo=UTC).timestamp()
    assert job.state is JobState.PENDING
    triggered = await scheduler.trigger_schedule("tick")
    assert triggered.attributes["jobwire.occurrence_time"] == "2026-06-01T12:00:13Z"


async def test_new_nearer_schedule_wakes_a_sleeping_runner(
    database_url: str, scheduler_factory: StartScheduler, provider: FlakyProvider
) -> None:
    scheduler: Scheduler = await scheduler_factory(database_url)
    await asyncio.sleep(0.1)  # the runner found nothing and sleeps for poll_interval (1 min)
    await scheduler.create_schedule(every("tick", 1))

    async def fired() -> bool:
        jobs, _ = await provider.list_jobs(ANY_JOB, 10, None)
        return any(job.schedule == "tick" for job in jobs)

    await eventually(fired, timeout=3)


async def test_failed_enqueue_records_last_error_and_keeps_the_timetable(
    database_url: str, scheduler_factory: StartScheduler, provider: FlakyProvider
) -> None:
    clock = FakeClock()
    scheduler: Scheduler = await scheduler_factory(database_url, clock)
    await scheduler.create_schedule(every("tick", 10))
    provider.broken = True
    clock.advance(seconds=10)
    scheduler.wake()

    async def failed() -> bool:
        return bool((await scheduler.get_schedule("tick")).last_error)

    await eventually(failed)
    schedule = await scheduler.get_schedule("tick")
    assert "queue backend unreachable" in schedule.last_error
    assert schedule.next_run_time == clock.now + timedelta(seconds=10)
    provider.broken = False
    clock.advance(seconds=10)
    scheduler.wake()

    async def recovered() -> bool:
        return (await scheduler.get_schedule("tick")).last_error == ""

    await eventually(recovered)
    assert (await scheduler.get_schedule("tick")).last_run_time == clock.now


async def test_runner_survives_its_postgres_connections_being_killed(
    postgres_url: str,
    provider: FlakyProvider,
    scheduler_factory: StartScheduler,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scheduler: Scheduler = await scheduler_factory(postgres_url)
    database = make_url(postgres_url).database
    assert database is not None
    await scheduler.create_schedule(every("tick", 1))

    async def fires() -> list[tuple[str, FireStatus]]:
        async with scheduler.store.engine.connect() as conn:
            rows = await conn.execute(select(ScheduleFire.job_id, ScheduleFire.status))
            return [(job_id, status) for job_id, status in rows]

    async def fired(count: int) -> bool:
        return len(await fires()) >= count

    await eventually(lambda: fired(1), timeout=3)
    # Pooled connections die while idle: replaced on checkout, nobody notices.
    assert terminate_connections(database) >= 1
    [(first, _)] = await scheduler.hold(
        [new_job(type="later", schedule_time=utc_now().timestamp() + 0.3)]
    )
    await eventually(lambda: in_provider(provider, first.id))

    # Then the database refuses connections for a while: the runner logs,
    # backs off, and carries on when it is back.
    psql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
    try:
        terminate_connections(database)
        await asyncio.sleep(1.5)
        with pytest.raises(UnavailableError):
            await scheduler.hold([new_job(type="later", schedule_time=utc_now().timestamp() + 0.3)])
    finally:
        psql(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
    assert "scheduler step failed" in caplog.text
    before = len(await fires())
    [(second, _)] = await scheduler.hold(
        [new_job(type="later", schedule_time=utc_now().timestamp() + 0.3)]
    )
    await eventually(lambda: fired(before + 2), timeout=5)
    await eventually(lambda: in_provider(provider, second.id))

    async def all_confirmed() -> bool:
        return all(status is FireStatus.ENQUEUED for _, status in await fires())

    await eventually(all_confirmed)
    jobs, _ = await provider.list_jobs(ANY_JOB, 100, None)
    # Every recorded occurrence reached the provider, as exactly one job.
    assert {job.id for job in jobs if job.schedule == "tick"} == {
        job_id for job_id, _ in await fires()
    }
