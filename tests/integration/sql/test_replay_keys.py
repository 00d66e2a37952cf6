"""Replays on the SQL providers and deduplication keys: one unfinished holder per key."""

from __future__ import annotations

import grpc
import pytest

from jobwire.v1 import job_pb2, queue_service_pb2

from backends import provider_settings
from conftest import GatewayFactory
from support import Producer, RawWorker, Request, State

Q = queue_service_pb2


async def kill(producer: Producer, worker: RawWorker, key: str) -> str:
    job = await producer.enqueue(deduplication_key=key, max_retries=0)
    [item] = await worker.jobs(1)
    failure = job_pb2.JobFailure(message="bug", type="RuntimeError")
    nack = Request.Nack.Item(lease_id=item.lease_id, failure=failure)
    await worker.send(Request(nack=Request.Nack(items=[nack])))
    await producer.wait_state(job.id, State.STATE_DEAD)
    return job.id


@pytest.mark.parametrize("provider_kind", ["postgres", "sqlite"])
async def test_a_replayed_job_takes_its_key_back_only_when_no_unfinished_job_holds_it(
    gateway_factory: GatewayFactory, request: pytest.FixtureRequest, provider_kind: str
) -> None:
    gateway = await gateway_factory(provider=provider_settings(provider_kind, request))
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        producer = Producer(channel)
        worker = await RawWorker(channel, max_in_flight=1).open()
        first = await kill(producer, worker, "nightly")
        second = await kill(producer, worker, "nightly")
        worker.drop()
        # Both dead jobs are replayed at once: the older one keeps the key.
        replay = Q.RetryJobsRequest(selector=Q.JobSelector(type="t"))
        assert (await producer.stub.RetryJobs(replay)).count == 2
        kept = await producer.get(first)
        dropped = await producer.get(second)
        assert (kept.state, kept.deduplication_key) == (State.STATE_PENDING, "nightly")
        assert (dropped.state, dropped.deduplication_key) == (State.STATE_PENDING, "")
        duplicate = await producer.stub.EnqueueJob(
            Q.EnqueueJobRequest(type="t", deduplication_key="nightly")
        )
        assert (duplicate.deduplicated, duplicate.job.id) == (True, first)
        # A single replay while another job holds the key: replayed, without it.
        purge = Q.PurgeJobsRequest(selector=Q.JobSelector(type="t"))
        assert (await producer.stub.PurgeJobs(purge)).count == 2
        worker = await RawWorker(channel, max_in_flight=1).open()
        dead = await kill(producer, worker, "hourly")
        worker.drop()
        holder = await producer.enqueue(deduplication_key="hourly")
        again = (await producer.stub.RetryJob(Q.RetryJobRequest(id=dead))).job
        assert (again.state, again.deduplication_key) == (State.STATE_PENDING, "")
        assert (await producer.get(holder.id)).deduplication_key == "hourly"
