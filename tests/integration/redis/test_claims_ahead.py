"""Claims ahead: the call recording a stream's answers leases the jobs its credits ask for next."""

from __future__ import annotations

import asyncio

import redis
from integration.redis.conftest import ClientFactory, RedisGateway
from integration.redis.test_gateways import provider_of

from jobwire.gateway._models import JobState
from jobwire.gateway.providers import AckRequest, Claim, Consumer
from jobwire.gateway.providers.redis import RedisProvider
from jobwire.v1 import queue_service_pb2

from support import State, eventually

Q = queue_service_pb2
COUNTS = "{jobwire}:counts:default"
"""Jobs of the default queue by state (``lua/lib.lua``)."""


def consumer(name: str = "ahead") -> Consumer:
    """A stream's consumer that no session drives: its jobs are only ever held ahead."""
    return Consumer(name, ("default",), frozenset(), 30.0, lambda revocation: None)


def held(provider: RedisProvider, owner: Consumer) -> list[Claim[int]]:
    return list(provider._leasing.ahead._held.get(owner, []))


async def test_an_ack_brings_the_next_jobs_as_first_attempts(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    gateway = await redis_gateway()
    client = await connect(gateway)
    enqueued = {(await client.producer.enqueue()).id for _ in range(6)}
    worker = await client.worker(max_in_flight=2)
    seen: list[str] = []
    for _ in range(3):
        items = await worker.jobs(2)
        assert [item.attempt for item in items] == [1, 1]
        seen += [item.job.id for item in items]
        for item in items:
            await worker.ack(item.lease_id)
            assert (await worker.result()).ok
    assert sorted(seen) == sorted(enqueued)
    stats = await client.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))
    assert (stats.queues[0].completed, stats.queues[0].processing) == (6, 0)
    assert not provider_of(gateway)._leasing.ahead._held


async def test_jobs_held_ahead_and_never_taken_go_back_as_never_leased(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    gateway = await redis_gateway()
    provider = provider_of(gateway)
    client = await connect(gateway)
    enqueued = {(await client.producer.enqueue()).id for _ in range(3)}
    gone = consumer()
    # As settle.lua leases them ahead: PROCESSING, attempt counted, then held.
    claims = await provider.claim(gone, 2)
    provider._leasing.ahead.put(gone, claims)

    async def back() -> bool:
        jobs = [await client.producer.get(claim.job.id) for claim in claims]
        return all(job.state == State.STATE_PENDING for job in jobs)

    await eventually(back)  # the stream never asked for them
    for claim in claims:
        job = await client.producer.get(claim.job.id)
        assert (job.attempt, job.worker_id, job.HasField("last_error")) == (0, "", False)
    worker = await client.worker(max_in_flight=3)
    items = await worker.jobs(3)
    assert {item.job.id for item in items} == enqueued
    assert [item.attempt for item in items] == [1, 1, 1]


async def test_a_job_held_ahead_and_cancelled_is_not_delivered(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    gateway = await redis_gateway()
    provider = provider_of(gateway)
    client = await connect(gateway)
    for _ in range(2):
        await client.producer.enqueue()
    owner = consumer()
    claims = await provider.claim(owner, 2)
    provider._leasing.ahead.put(owner, claims)
    doomed, kept = claims
    await client.producer.stub.CancelJob(Q.CancelJobRequest(id=doomed.job.id))
    # The cancel channel tells the gateway that leased it, here the same one.
    await eventually(lambda: [c.job.id for c in held(provider, owner)] == [kept.job.id])
    assert [claim.job.id for claim in await provider.claim(owner, 2)] == [kept.job.id]
    assert (await client.producer.get(doomed.job.id)).state == State.STATE_CANCELLED


async def test_jobs_leased_ahead_for_a_stream_that_ended_during_the_call_go_back(
    redis_gateway: RedisGateway, connect: ClientFactory, redis_url: str
) -> None:
    gateway = await redis_gateway()
    client = await connect(gateway)
    for _ in range(3):
        await client.producer.enqueue()
    leases = gateway.service.leases
    owner = consumer("cut")
    owner.credits = 3
    leases.connect(owner)
    [delivery] = await leases.receive(owner, 1)
    # The stream ends once Redis ran its ack's call (which leased the other two
    # ahead), before the answer is read: looked at without letting the loop run.
    answering = asyncio.create_task(leases.ack(owner, [AckRequest(delivery.lease_id)]))
    with redis.Redis.from_url(redis_url) as admin:
        for _ in range(100_000):
            if admin.hget(COUNTS, JobState.COMPLETED.value) is not None:
                break
            await asyncio.sleep(0)
    answering.cancel()
    await leases.disconnect(owner)

    async def back() -> bool:  # at once, not when their lease (30 s) runs out
        listed = await client.producer.stub.ListJobs(Q.ListJobsRequest(page_size=10))
        others = [job for job in listed.jobs if job.id != delivery.job.id]
        return all((job.state, job.attempt) == (State.STATE_PENDING, 0) for job in others)

    await eventually(back)
