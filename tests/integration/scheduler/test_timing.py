"""Real gateways and real time, on SQLite and PostgreSQL: on time, repeatedly, after a restart."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from jobwire.gateway import Gateway, GatewaySettings, testing
from jobwire.gateway.testing import running_gateway
from jobwire.v1 import schedule_service_pb2, schedule_service_pb2_grpc

from support import Producer, RawWorker, State, seconds
from timing import ON_TIME

S = schedule_service_pb2


def settings(database_url: str) -> GatewaySettings:
    # A short threshold sends second-long delays through the scheduler.
    return testing.settings_for_tests(
        scheduler={"database_url": database_url, "delay_threshold": 0.5}
    )


@asynccontextmanager
async def connected(gateway: Gateway) -> AsyncIterator[tuple[grpc.aio.Channel, RawWorker]]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        worker = await RawWorker(channel, max_in_flight=10).open()
        try:
            yield channel, worker
        finally:
            worker.drop()


async def test_one_time_job_is_processed_at_its_time_and_not_before(database_url: str) -> None:
    async with running_gateway(settings(database_url)) as gateway:
        assert gateway.scheduler is not None
        async with connected(gateway) as (channel, worker):
            job = await Producer(channel).enqueue(delay=seconds(1.5))
            assert job.state == State.STATE_SCHEDULED
            assert await gateway.scheduler.get_job(job.id) is not None  # held, not queued
            due = job.schedule_time.ToNanoseconds() / 1e9
            await worker.nothing("delivery", within=due - time.time() - 0.1)
            [item] = await worker.jobs(1, timeout=due - time.time() + ON_TIME)
            arrived = time.time()
            assert item.job.id == job.id
            assert due <= arrived < due + ON_TIME
            await worker.ack(item.lease_id)
            assert (await worker.result()).ok


async def test_every_second_schedule_fires_repeatedly(database_url: str) -> None:
    gateway = running_gateway(settings(database_url))
    async with gateway as running, connected(running) as (channel, worker):
        stub = schedule_service_pb2_grpc.ScheduleServiceStub(channel)
        every_second = S.Schedule(
            name="tick", job_template=S.JobTemplate(type="tick"), interval=seconds(1)
        )
        await stub.CreateSchedule(S.CreateScheduleRequest(schedule=every_second))
        items = await worker.jobs(3, timeout=2 + ON_TIME)
        assert len({item.job.id for item in items}) == len(items)
        assert {item.job.schedule for item in items} == {"tick"}
        await worker.ack(*(item.lease_id for item in items))
        state = (await stub.GetSchedule(S.GetScheduleRequest(name="tick"))).schedule
        assert state.last_job_id
        assert state.next_run_time.ToNanoseconds() > state.last_run_time.ToNanoseconds()


async def test_jobs_and_schedules_survive_a_gateway_restart(database_url: str) -> None:
    config = settings(database_url)
    daily = S.Schedule(name="daily", job_template=S.JobTemplate(type="d"), cron="0 9 * * *")
    async with running_gateway(config) as first, connected(first) as (channel, _):
        job = await Producer(channel).enqueue(delay=seconds(1.5))
        stub = schedule_service_pb2_grpc.ScheduleServiceStub(channel)
        created = (await stub.CreateSchedule(S.CreateScheduleRequest(schedule=daily))).schedule
    async with running_gateway(config) as second, connected(second) as (channel, worker):
        producer = Producer(channel)
        assert (await producer.get(job.id)).state == State.STATE_SCHEDULED
        stub = schedule_service_pb2_grpc.ScheduleServiceStub(channel)
        again = (await stub.GetSchedule(S.GetScheduleRequest(name="daily"))).schedule
        assert again == created
        [item] = await worker.jobs(1, timeout=1.5 + ON_TIME)
        assert item.job.id == job.id
        assert time.time() >= job.schedule_time.ToNanoseconds() / 1e9


async def test_a_held_job_keeps_its_priority_through_the_hand_off(database_url: str) -> None:
    async with running_gateway(settings(database_url)) as gateway:
        assert gateway.scheduler is not None
        async with connected(gateway) as (channel, worker):
            job = await Producer(channel).enqueue(delay=seconds(1), priority=8)
            assert await gateway.scheduler.get_job(job.id) is not None  # held, not queued
            assert (await Producer(channel).get(job.id)).priority == 8
            [item] = await worker.jobs(1, timeout=1 + ON_TIME)
            assert (item.job.id, item.job.priority) == (job.id, 8)


async def test_a_schedules_jobs_have_its_priority(database_url: str) -> None:
    async with (
        running_gateway(settings(database_url)) as gateway,
        grpc.aio.insecure_channel(gateway.address) as channel,
    ):
        stub = schedule_service_pb2_grpc.ScheduleServiceStub(channel)
        urgent = S.Schedule(
            name="urgent",
            job_template=S.JobTemplate(type="t", priority=8),
            interval=seconds(3600),
        )
        created = await stub.CreateSchedule(S.CreateScheduleRequest(schedule=urgent))
        assert created.schedule.job_template.priority == 8
        fired = await stub.TriggerSchedule(S.TriggerScheduleRequest(name="urgent"))
        assert fired.job.priority == 8
        bad = S.Schedule(
            name="bad", job_template=S.JobTemplate(type="t", priority=10), interval=seconds(60)
        )
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.CreateSchedule(S.CreateScheduleRequest(schedule=bad))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "schedule.job_template.priority" in (raised.value.details() or "")
