"""The store on SQLite and PostgreSQL: holding, claiming once, confirming, recovering."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from integration.scheduler.helpers import FakeClock
from sqlalchemy import func, insert, select, text, update

from jobwire.gateway._errors import ScheduleExistsError, ScheduleNotFoundError
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobState, NewJob
from jobwire.gateway.scheduler import JobTemplate, MisfirePolicy, ScheduleSpec
from jobwire.gateway.scheduler.firing import Handoff
from jobwire.gateway.scheduler.models import (
    SCHEMA_VERSION,
    FireStatus,
    HeldStatus,
    ScheduledJob,
    ScheduleFire,
    SchemaVersion,
)
from jobwire.gateway.scheduler.store import SchedulerStore
from jobwire.gateway.scheduler.timetable import fire_job_id

LEASE = timedelta(seconds=30)
GRACE = timedelta(seconds=60)


def new_job(at: datetime, **fields: object) -> NewJob:
    values: dict[str, object] = {
        "queue": "default",
        "type": "t",
        "payload": b"{}",
        "content_type": "application/json",
        "attributes": {"k": "v"},
        "max_retries": 3,
        "timeout": None,
        "deduplication_key": "",
        "schedule_time": at.timestamp(),
        "request_id": "",
    }
    values.update(fields)
    return NewJob(**values)  # type: ignore[arg-type]  # test data


def every(name: str, seconds: float, **fields: object) -> ScheduleSpec:
    return ScheduleSpec(
        name=name,
        template=JobTemplate(type="tick"),
        interval=timedelta(seconds=seconds),
        **fields,  # type: ignore[arg-type]  # test data
    )


async def claim(store: SchedulerStore, now: datetime, limit: int = 500) -> list[Handoff]:
    handoffs, _ = await store.claim(now, limit=limit, lease=LEASE, grace=GRACE)
    return handoffs


async def test_held_job_is_claimed_once_when_due_and_confirmed(store: SchedulerStore) -> None:
    clock = FakeClock()
    [(row, duplicate)] = await store.hold([new_job(clock.now + timedelta(hours=1))], clock.now)
    assert not duplicate
    assert await claim(store, clock.advance(minutes=59)) == []
    [handoff] = await claim(store, clock.advance(minutes=1))
    assert handoff.job.id == row.id
    assert handoff.job.schedule_time is None
    assert handoff.job.attributes == {"k": "v"}
    assert await claim(store, clock.now) == []  # claimed: nobody else gets it
    assert await store.confirm([handoff], clock.now) == []
    stored = await store.get_held(row.id)
    assert stored is not None
    assert stored.status is HeldStatus.ENQUEUED
    assert await claim(store, clock.advance(hours=1)) == []  # confirmed: never again
    assert await store.next_due_time() is None


async def test_abandoned_claim_is_taken_over_with_the_same_job_id(store: SchedulerStore) -> None:
    clock = FakeClock()
    [(row, _)] = await store.hold([new_job(clock.now)], clock.now)
    await store.create_schedule(every("hourly", 3600), clock.now)
    first = await claim(store, clock.advance(hours=1))
    assert len(first) == 2
    # The claiming gateway died: nothing is confirmed. Before the lease ends
    # nothing moves; after it, the same jobs are handed over again.
    assert await store.next_due_time() == clock.now + LEASE
    assert await claim(store, clock.advance(seconds=29)) == []
    again = await claim(store, clock.advance(seconds=2))
    retried = {h.job.id for h in again}
    assert {h.job.id for h in first} <= retried
    assert row.id in retried


async def test_concurrent_claimers_split_due_work_without_overlap(database_url: str) -> None:
    clock = FakeClock()
    stores = [SchedulerStore.from_url(database_url) for _ in range(4)]
    try:
        for store in stores:
            await store.open()
        await stores[0].hold([new_job(clock.now) for _ in range(300)], clock.now)
        for i in range(20):
            await stores[0].create_schedule(every(f"s{i}", 5), clock.now)
        due = clock.advance(seconds=5)

        async def drain(store: SchedulerStore) -> list[str]:
            ids: list[str] = []
            while batch := await claim(store, due, limit=25):
                ids.extend(h.job.id for h in batch)
            return ids

        claimed = await asyncio.gather(*(drain(store) for store in stores))
        every_id = [job_id for ids in claimed for job_id in ids]
        assert len(every_id) == len(set(every_id)) == 320
    finally:
        for store in stores:
            await store.close()


async def test_cancel_during_hand_over_is_reported_by_confirm(store: SchedulerStore) -> None:
    clock = FakeClock()
    [(row, _)] = await store.hold([new_job(clock.now)], clock.now)
    [handoff] = await claim(store, clock.now)
    cancelled = await store.cancel_held(row.id, "changed my mind", clock.now)
    assert cancelled is not None
    assert cancelled.status is HeldStatus.CANCELLED
    assert await store.confirm([handoff], clock.now) == [row.id]
    # Cancelling again returns it unchanged; an enqueued job is not the scheduler's.
    again = await store.cancel_held(row.id, "again", clock.now)
    assert again is not None
    assert again.last_error == "changed my mind"


async def test_enqueued_job_is_not_cancelled_by_the_scheduler(store: SchedulerStore) -> None:
    clock = FakeClock()
    [(row, _)] = await store.hold([new_job(clock.now)], clock.now)
    await store.confirm(await claim(store, clock.now), clock.now)
    assert await store.cancel_held(row.id, "", clock.now) is None
    assert await store.cancel_held("no-such-job", "", clock.now) is None


async def test_purge_held_follows_the_selector_and_spares_hand_overs(
    store: SchedulerStore,
) -> None:
    clock = FakeClock()
    later = clock.now + timedelta(hours=1)
    held = [row for row, _ in await store.hold([new_job(later) for _ in range(3)], clock.now)]
    [(mail, _)] = await store.hold([new_job(later, queue="mail", type="m")], clock.now)
    [(handed, _)] = await store.hold([new_job(clock.now)], clock.now)
    [handoff] = await claim(store, clock.now)  # being handed to the provider
    [(gone, _)] = await store.hold([new_job(clock.now)], clock.now)
    await store.confirm(await claim(store, clock.now), clock.now)  # the provider's now
    await store.cancel_held(held[2].id, "Not needed", clock.now)

    async def purge(validate_only: bool = False, **fields: object) -> int:
        selector = JobSelector(**fields)  # type: ignore[arg-type]  # test data
        return await store.purge_held(selector, validate_only=validate_only)

    assert await purge(ids=frozenset({handed.id, gone.id, "unknown"})) == 0
    assert await purge(error_contains="not needed") == 0  # case-sensitive
    assert await purge(states=frozenset({JobState.DEAD})) == 0
    assert await purge(created_before=clock.now.timestamp()) == 0
    assert await purge(queue="mail", type="t") == 0
    assert await purge(ids=frozenset({held[0].id, mail.id}), queue="mail") == 1
    assert await store.get_held(mail.id) is None
    assert await purge(True, error_contains="Not needed") == 1
    assert await purge(states=frozenset({JobState.CANCELLED})) == 1
    assert await purge(True, created_after=clock.now.timestamp()) == 2
    assert await purge(states=frozenset({JobState.SCHEDULED})) == 2
    assert await store.get_held(held[1].id) is None
    assert await store.confirm([handoff], clock.now) == []


async def test_request_id_and_deduplication_key_collapse_duplicates(store: SchedulerStore) -> None:
    clock = FakeClock()
    later = clock.now + timedelta(hours=1)
    results = await store.hold(
        [
            new_job(later, request_id="r1"),
            new_job(later, request_id="r1"),
            new_job(later, deduplication_key="k"),
        ],
        clock.now,
    )
    assert [dup for _, dup in results] == [False, True, False]
    assert results[0][0].id == results[1][0].id
    [(again, dup)] = await store.hold([new_job(later, deduplication_key="k")], clock.now)
    assert dup
    assert again.id == results[2][0].id


async def test_schedule_fires_each_occurrence_once_with_a_deterministic_job_id(
    store: SchedulerStore,
) -> None:
    clock = FakeClock()
    schedule = await store.create_schedule(every("tick", 10), clock.now)
    assert schedule.next_run_time == clock.now + timedelta(seconds=10)
    [fire] = await claim(store, clock.advance(seconds=10))
    assert fire.fire_time == clock.now
    assert fire.job.id == fire_job_id(schedule.id, clock.now)
    assert fire.job.schedule == "tick"
    assert await claim(store, clock.now) == []
    await store.confirm([fire], clock.now)
    stored = await store.get_schedule("tick")
    assert stored.next_run_time == clock.now + timedelta(seconds=10)
    assert stored.last_run_time == clock.now
    assert stored.last_job_id == fire.job.id


async def test_an_occurrence_already_recorded_is_not_fired_again(store: SchedulerStore) -> None:
    clock = FakeClock()
    schedule = await store.create_schedule(every("tick", 10), clock.now)
    due = clock.now + timedelta(seconds=10)
    # A gateway recorded this occurrence, then crashed before moving
    # next_run_time on (or a clock went backwards): the unique key holds.
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(ScheduleFire).values(
                schedule_id=schedule.id,
                fire_time=due,
                job_id=fire_job_id(schedule.id, due),
                status=FireStatus.ENQUEUED,
                error="",
            )
        )
    assert await claim(store, clock.advance(seconds=10)) == []
    stored = await store.get_schedule("tick")
    assert stored.next_run_time == due + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("policy", "fires"), [(MisfirePolicy.SKIP, False), (MisfirePolicy.RUN_ONCE, True)]
)
async def test_misfire_policy_after_a_day_of_downtime(
    store: SchedulerStore, policy: MisfirePolicy, fires: bool
) -> None:
    clock = FakeClock()
    await store.create_schedule(every("hourly", 3600, misfire_policy=policy), clock.now)
    handoffs = await claim(store, clock.advance(days=1, minutes=30))
    assert len(handoffs) == (1 if fires else 0)
    stored = await store.get_schedule("hourly")
    assert stored.next_run_time == clock.now + timedelta(minutes=30)
    assert await claim(store, clock.now) == []


async def test_failed_enqueue_records_the_error_and_moves_on(store: SchedulerStore) -> None:
    clock = FakeClock()
    [(row, _)] = await store.hold([new_job(clock.now)], clock.now)
    await store.create_schedule(every("tick", 10), clock.now)
    handoffs = await claim(store, clock.advance(seconds=10))
    await store.record_failure(handoffs, "ProviderError: queue is gone", clock.now)
    schedule = await store.get_schedule("tick")
    assert schedule.last_error == "ProviderError: queue is gone"
    assert schedule.next_run_time == clock.now + timedelta(seconds=10)
    held = await store.get_held(row.id)
    assert held is not None
    assert held.last_error == "ProviderError: queue is gone"
    # The occurrence is not retried; the one-time job is, once its claim expires.
    retried = await claim(store, clock.advance(seconds=LEASE.total_seconds() + 1))
    assert [h.job.id for h in retried if not h.schedule_id] == [row.id]


async def test_pause_and_resume(store: SchedulerStore) -> None:
    clock = FakeClock()
    await store.create_schedule(every("tick", 10), clock.now)
    paused = await store.set_paused("tick", True, clock.now)
    assert paused.next_run_time is None
    assert await claim(store, clock.advance(minutes=5)) == []
    resumed = await store.set_paused("tick", False, clock.advance(seconds=3))
    assert resumed.next_run_time == clock.now + timedelta(seconds=7)


async def test_schedule_crud(store: SchedulerStore) -> None:
    clock = FakeClock()
    await store.create_schedule(every("b", 10), clock.now)
    with pytest.raises(ScheduleExistsError):
        await store.create_schedule(every("b", 20), clock.now)
    await store.create_schedule(every("a", 10), clock.now)
    await store.create_schedule(every("c", 10), clock.now)
    page, more = await store.list_schedules("", 2)
    assert [row.name for row in page] == ["a", "b"]
    assert more
    page, more = await store.list_schedules("b", 2)
    assert [row.name for row in page] == ["c"]
    assert not more

    def slower(spec: ScheduleSpec | None) -> ScheduleSpec:
        assert spec is not None
        return every(spec.name, 60, description="slower")

    row, created = await store.update_schedule("b", slower, clock.advance(seconds=1))
    assert not created
    assert row.interval_seconds == 60
    assert row.next_run_time == datetime(2026, 6, 1, 12, 1, tzinfo=UTC)
    assert await store.delete_schedule("b")
    assert not await store.delete_schedule("b")
    with pytest.raises(ScheduleNotFoundError):
        await store.get_schedule("b")
    with pytest.raises(ScheduleNotFoundError):
        await store.update_schedule("b", slower, clock.now)


async def test_deleting_a_schedule_deletes_its_occurrences(store: SchedulerStore) -> None:
    clock = FakeClock()
    await store.create_schedule(every("tick", 10), clock.now)
    await store.confirm(await claim(store, clock.advance(seconds=10)), clock.now)
    assert await store.delete_schedule("tick")
    async with store.engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(ScheduleFire)) == 0


async def test_prune_keeps_what_is_still_pending(store: SchedulerStore) -> None:
    clock = FakeClock()
    [(done, _)] = await store.hold([new_job(clock.now)], clock.now)
    [(waiting, _)] = await store.hold([new_job(clock.now + timedelta(days=3))], clock.now)
    await store.create_schedule(every("tick", 10), clock.now)
    await store.confirm(await claim(store, clock.advance(seconds=10)), clock.now)
    assert await store.prune(clock.now + timedelta(days=1)) == 2
    assert await store.get_held(done.id) is None
    assert await store.get_held(waiting.id) is not None


async def test_unknown_schema_version_refuses_to_start(store: SchedulerStore) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(update(SchemaVersion).values(version=99))
    other = SchedulerStore(store.engine)
    with pytest.raises(RuntimeError, match="schema version 99"):
        await other.open()
    async with store.engine.begin() as conn:
        await conn.execute(update(SchemaVersion).values(version=SCHEMA_VERSION))


async def test_a_version_1_database_is_upgraded_and_keeps_its_held_jobs(
    store: SchedulerStore,
) -> None:
    clock = FakeClock()
    [(held, _)] = await store.hold([new_job(clock.now + timedelta(days=1))], clock.now)
    # Version 1 had no priority column (nor version 2's concurrency key).
    async with store.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE scheduled_jobs DROP COLUMN concurrency_key"))
        await conn.execute(text("ALTER TABLE scheduled_jobs DROP COLUMN priority"))
        await conn.execute(text("ALTER TABLE schedules DROP COLUMN priority"))
        await conn.execute(update(SchemaVersion).values(version=1))
    upgraded = SchedulerStore(store.engine)
    await upgraded.open()
    async with store.engine.begin() as conn:
        assert await conn.scalar(select(SchemaVersion.version)) == SCHEMA_VERSION
    row = await upgraded.get_held(held.id)
    assert row is not None
    assert (row.priority, row.concurrency_key) == (5, "")


async def test_times_round_trip_as_aware_utc(store: SchedulerStore) -> None:
    clock = FakeClock(datetime(2026, 3, 8, 6, 59, 59, 123456, tzinfo=UTC))
    [(row, _)] = await store.hold([new_job(clock.now)], clock.now)
    stored = await store.get_held(row.id)
    assert stored is not None
    assert stored.create_time == clock.now
    assert stored.create_time.tzinfo is UTC
    async with store.engine.connect() as conn:
        count = await conn.scalar(
            select(func.count())
            .select_from(ScheduledJob)
            .where(ScheduledJob.schedule_time <= clock.now)
        )
        assert count == 1
        # The SQL text sees the same instant whatever the session time zone.
        if store.engine.dialect.name == "postgresql":
            await conn.execute(text("SET TIME ZONE 'America/New_York'"))
            again = await conn.scalar(select(ScheduledJob.create_time))
            assert again == clock.now
