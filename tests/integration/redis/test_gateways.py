"""Several gateways on one Redis: one set of jobs, whichever gateway a client talks to."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest
import redis
from integration.redis.conftest import ClientFactory, RedisGateway

from jobwire.gateway import Gateway
from jobwire.gateway.providers.redis import RedisProvider
from jobwire.v1 import queue_service_pb2

from conftest import GatewayFactory
from redis_support import RedisServer
from support import Response, State, eventually, seconds
from timing import FRAME_TIMEOUT
from watching import follow_across_gateways

Q = queue_service_pb2


def provider_of(gateway: Gateway) -> RedisProvider:
    provider = gateway.provider
    assert isinstance(provider, RedisProvider)
    return provider


async def test_producer_on_one_gateway_worker_on_the_other(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    # A's watchers see B's changes at A's next look, every third of gateway_timeout.
    a = await connect(await redis_gateway(gateway_timeout=3))
    b = await connect(await redis_gateway(gateway_timeout=3))
    worker = await b.worker(worker_id="on-b", max_in_flight=5)

    # Enqueued through A, done by B's worker; A's WatchJob follows B's changes.
    job = await a.producer.enqueue(payload=b"in")
    watched = asyncio.create_task(a.producer.wait_state(job.id, State.STATE_COMPLETED))
    [item] = await worker.jobs(1)
    assert item.job.id == job.id
    await worker.ack(item.lease_id, result=b"out")
    assert (await worker.result()).ok
    done = await watched
    assert (done.result, done.worker_id, done.attempt) == (b"out", "on-b", 1)

    # Cancelled through A while B's worker runs it: B is told at once and revokes the lease.
    doomed = await a.producer.enqueue()
    [held] = await worker.jobs(1)
    await a.producer.stub.CancelJob(Q.CancelJobRequest(id=doomed.id, reason="changed my mind"))
    revoked = (await worker.expect("lease_revoked")).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (
        held.lease_id,
        Response.LeaseRevoked.REASON_CANCELLED,
    )
    await worker.ack(held.lease_id)
    late = await worker.result()
    assert (late.ok, late.reason) == (False, "LEASE_REVOKED")
    cancelled = await b.producer.get(doomed.id)
    assert (cancelled.state, cancelled.last_error.message) == (
        State.STATE_CANCELLED,
        "changed my mind",
    )

    # One deduplication key enqueued through both at once, many times: one job.
    request = Q.EnqueueJobRequest(type="t", queue="other", deduplication_key="nightly")
    answers = await asyncio.gather(
        *(gw.producer.stub.EnqueueJob(request) for gw in (a, b) for _ in range(10))
    )
    assert len({answer.job.id for answer in answers}) == 1
    assert sum(not answer.deduplicated for answer in answers) == 1

    # Either gateway counts and lists every job.
    for gw in (a, b):
        stats = await gw.producer.stub.GetQueueStats(Q.GetQueueStatsRequest())
        by_queue = {q.queue: q for q in stats.queues}
        assert (by_queue["default"].completed, by_queue["default"].cancelled) == (1, 1)
        assert by_queue["other"].pending == 1
        listed = await gw.producer.stub.ListJobs(Q.ListJobsRequest(page_size=10))
        assert [j.id for j in listed.jobs][-2:] == [doomed.id, job.id]


async def test_the_leases_of_a_gateway_that_stopped_heartbeating_come_back_elsewhere(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    doomed_gateway = await redis_gateway(gateway_timeout=1)
    doomed = await connect(doomed_gateway)
    survivor = await connect(await redis_gateway(gateway_timeout=1))
    job = await doomed.producer.enqueue(max_retries=3)
    stranded = await doomed.worker(worker_id="stranded")
    [item] = await stranded.jobs(1)
    # The gateway's process is still there, but it stops heartbeating as a dead one would.
    await provider_of(doomed_gateway)._upkeep.stop()
    taker = await survivor.worker(worker_id="taker")
    [again] = await taker.jobs(1)
    assert (again.job.id, again.attempt) == (job.id, 2)
    assert again.job.last_error.type == "GATEWAY_LOST"
    # The stranded worker's answer is fenced off; the job is the taker's.
    await stranded.ack(item.lease_id)
    assert (await stranded.result()).reason == "LEASE_EXPIRED"
    await taker.ack(again.lease_id)
    assert (await taker.result()).ok
    assert (await survivor.producer.get(job.id)).state == State.STATE_COMPLETED


async def test_a_delayed_job_of_a_stopped_gateway_comes_due_on_another(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    first = await redis_gateway(gateway_timeout=1)
    other = await connect(await redis_gateway(gateway_timeout=1))
    job = await (await connect(first)).producer.enqueue(delay=seconds(0.5))
    await first.stop()
    worker = await other.worker()
    [item] = await worker.jobs(1)
    assert item.job.id == job.id
    assert time.time() >= job.schedule_time.ToNanoseconds() / 1e9


async def test_finished_jobs_are_forgotten_after_the_retention(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    client = await connect(await redis_gateway(history_retention=0.5, gateway_timeout=1))
    job = await client.producer.enqueue()
    waiting = await client.producer.enqueue(delay=seconds(60))
    worker = await client.worker()
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id)
    assert (await worker.result()).ok

    async def forgotten() -> bool:
        listed = await client.producer.stub.ListJobs(Q.ListJobsRequest())
        return [j.id for j in listed.jobs] == [waiting.id]

    await eventually(forgotten)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await client.producer.get(job.id)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await client.producer.get(waiting.id)).state == State.STATE_SCHEDULED


async def test_an_evicting_redis_is_reported_at_start(
    redis_gateway: RedisGateway, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis(port=redis_server.port) as admin:
        admin.config_set("maxmemory-policy", "allkeys-lru")
        try:
            with caplog.at_level(logging.WARNING, "jobwire.gateway.redis"):
                await redis_gateway()
        finally:
            admin.config_set("maxmemory-policy", "noeviction")
    assert "maxmemory-policy allkeys-lru" in caplog.text
    assert "jobs are lost" in caplog.text


async def test_a_sigkilled_redis_with_aof_keeps_its_jobs_and_the_worker_stream(
    gateway_factory: GatewayFactory, connect: ClientFactory
) -> None:
    server = RedisServer(appendonly=True)
    try:
        # A promotion of due jobs that fails while Redis is away is tried again
        # a third of gateway_timeout later: 1 s keeps that well inside the wait.
        provider = {"type": "redis", "url": server.url, "gateway_timeout": 1}
        gateway = await gateway_factory(provider=provider)
        client = await connect(gateway)
        worker = await client.worker(max_in_flight=10)
        first = await client.producer.enqueue(delay=seconds(1.5))
        # Redis wrote the job to its AOF before answering; a killed process leaves
        # that in the OS's cache (only a machine crash loses the last second).
        server.kill()
        server.start()
        # The same stream, after Redis came back (and loaded its AOF, on a busy machine).
        [item] = await worker.jobs(1, timeout=2 * FRAME_TIMEOUT)
        assert item.job.id == first.id
        await worker.ack(item.lease_id)
        assert (await worker.result()).ok
        second = await client.producer.enqueue()
        [again] = await worker.jobs(1)
        assert again.job.id == second.id
        await worker.ack(again.lease_id)
        # Stopped while its Redis runs: a gateway stopped against a dead Redis
        # leaves its worker session giving the lease back (redis-py retrying the
        # connection for seconds) after this test, on the session's event loop.
        await gateway.stop()
    finally:
        server.stop()


async def test_a_job_due_in_a_day_waits_in_redis_for_every_gateway(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    # Not in the enqueueing gateway's scheduler database: that one stops here.
    first = await redis_gateway()
    job = await (await connect(first)).producer.enqueue(delay=seconds(86_400))
    await first.stop()
    other = await connect(await redis_gateway())
    held = await other.producer.get(job.id)
    assert (held.state, held.schedule_time) == (State.STATE_SCHEDULED, job.schedule_time)
    await other.producer.stub.CancelJob(Q.CancelJobRequest(id=job.id))
    assert (await other.producer.get(job.id)).state == State.STATE_CANCELLED


async def test_a_gateway_watches_jobs_another_gateway_enqueues_and_runs(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    # A reads back the watched jobs, and looks for new ones, every third of gateway_timeout.
    a = await connect(await redis_gateway(gateway_timeout=1))
    b = await connect(await redis_gateway(gateway_timeout=1))
    worker = await b.worker(worker_id="on-b", max_in_flight=8)
    await follow_across_gateways(a.producer, b.producer, worker)
