"""Two gateways on one moto server and one PostgreSQL database serve clients together."""

from __future__ import annotations

import asyncio

from integration.sqs.conftest import ClientFactory, SqsGateway

from jobwire.v1 import queue_service_pb2

from support import Response, State
from watching import follow_across_gateways

Q = queue_service_pb2


async def test_producer_on_one_gateway_worker_on_the_other(
    sqs_gateway: SqsGateway, postgres_url: str, connect: ClientFactory
) -> None:
    shared = {"scheduler": {"database_url": postgres_url}, "sync_interval": 0.2}
    a = await connect(await sqs_gateway(**shared))
    b = await connect(await sqs_gateway(**shared))
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

    # Cancelled through A while B's worker runs it: B revokes the lease.
    doomed = await a.producer.enqueue()
    [held] = await worker.jobs(1)
    await a.producer.stub.CancelJob(Q.CancelJobRequest(id=doomed.id, reason="changed my mind"))
    revoked = (await worker.expect("lease_revoked", timeout=3)).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (
        held.lease_id,
        Response.LeaseRevoked.REASON_CANCELLED,
    )
    assert "changed my mind" in revoked.message
    await worker.ack(held.lease_id)
    late = await worker.result()
    assert (late.ok, late.reason) == (False, "LEASE_REVOKED")
    assert (await b.producer.get(doomed.id)).state == State.STATE_CANCELLED

    # One deduplication key enqueued through both at once: one job.
    request = Q.EnqueueJobRequest(type="t", queue="other", deduplication_key="nightly")
    first, second = await asyncio.gather(
        a.producer.stub.EnqueueJob(request), b.producer.stub.EnqueueJob(request)
    )
    assert first.job.id == second.job.id
    assert sorted([first.deduplicated, second.deduplicated]) == [False, True]

    # Either gateway counts every job.
    stats = await a.producer.stub.GetQueueStats(Q.GetQueueStatsRequest())
    by_queue = {q.queue: q for q in stats.queues}
    assert (by_queue["default"].completed, by_queue["default"].cancelled) == (1, 1)
    assert by_queue["other"].pending == 1


async def test_a_gateway_watches_jobs_another_gateway_enqueues_and_runs(
    sqs_gateway: SqsGateway, postgres_url: str, connect: ClientFactory
) -> None:
    # A reads back the watched jobs, and looks for new ones, every sync_interval.
    shared = {"scheduler": {"database_url": postgres_url}, "sync_interval": 0.2}
    a = await connect(await sqs_gateway(**shared))
    b = await connect(await sqs_gateway(**shared))
    worker = await b.worker(worker_id="on-b", max_in_flight=8)
    await follow_across_gateways(a.producer, b.producer, worker)
