"""Gateways on one PostgreSQL database serve the same queues together."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf.duration_pb2 import Duration
from integration.sql.conftest import SqlGateway
from integration.sqs.conftest import ClientFactory

from jobwire.v1 import queue_service_pb2

from postgres import psql
from support import Response, State
from timing import FRAME_TIMEOUT

Q = queue_service_pb2


async def test_producer_on_one_gateway_worker_on_the_other(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    a = await connect(await postgres_gateway())
    b = await connect(await postgres_gateway())
    worker = await b.worker(worker_id="on-b", max_in_flight=5)

    # Enqueued through A, woken on B by NOTIFY (no poll: 5 s would time out below).
    job = await a.producer.enqueue(payload=b"in")
    [item] = await worker.jobs(1, timeout=3)
    assert item.job.id == job.id
    await worker.ack(item.lease_id, result=b"out")
    assert (await worker.result()).ok
    done = await a.producer.get(job.id)
    assert (done.state, done.result, done.worker_id, done.attempt) == (
        State.STATE_COMPLETED,
        b"out",
        "on-b",
        1,
    )

    # Cancelled through A while B's worker runs it: B revokes the lease at A's NOTIFY.
    doomed = await a.producer.enqueue()
    [held] = await worker.jobs(1, timeout=3)
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

    # Either gateway counts every job.
    stats = await a.producer.stub.GetQueueStats(Q.GetQueueStatsRequest())
    by_queue = {q.queue: q for q in stats.queues}
    assert (by_queue["default"].completed, by_queue["default"].cancelled) == (1, 1)


async def test_one_key_enqueued_through_two_gateways_at_once_is_one_job(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    a = await connect(await postgres_gateway())
    b = await connect(await postgres_gateway())
    for round_ in range(10):
        request = Q.EnqueueJobRequest(type="t", deduplication_key=f"nightly-{round_}")
        first, second = await asyncio.gather(
            a.producer.stub.EnqueueJob(request), b.producer.stub.EnqueueJob(request)
        )
        assert first.job.id == second.job.id
        assert sorted([first.deduplicated, second.deduplicated]) == [False, True]
    stats = await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))
    assert stats.queues[0].pending == 10


async def test_leases_of_a_gateway_without_heartbeat_are_released_as_an_attempt(
    postgres_gateway: SqlGateway, connect: ClientFactory, queue_database: str
) -> None:
    a = await connect(await postgres_gateway(heartbeat_interval=0.2, heartbeat_timeout=1))
    job = await a.producer.enqueue(max_retries=5)
    # As a gateway that died holding the job leaves it: processing, attempt 1,
    # leased by a gateway that no longer beats.
    psql(
        "UPDATE jobwire_jobs SET state = 3, attempt = 1, gateway_id = 'gone' "
        f"WHERE id = '{job.id}'",
        queue_database,
    )
    worker = await a.worker(worker_id="on-a")
    [again] = await worker.jobs(1, timeout=10)
    assert (again.job.id, again.attempt) == (job.id, 2)
    assert again.job.last_error.type == "GATEWAY_LOST"
    assert "gateway gone stopped" in again.job.last_error.message


async def test_a_job_leased_here_in_the_table_but_held_by_no_lease_is_released(
    postgres_gateway: SqlGateway, connect: ClientFactory, queue_database: str
) -> None:
    a = await connect(await postgres_gateway(heartbeat_interval=0.2, heartbeat_timeout=1))
    job = await a.producer.enqueue(max_retries=5)
    # As a claim that committed while its connection died leaves it: leased by
    # this gateway, which is alive (its heartbeat goes on) but holds no lease.
    psql(
        "UPDATE jobwire_jobs SET state = 3, attempt = 1, "
        "gateway_id = (SELECT id FROM jobwire_gateways) "
        f"WHERE id = '{job.id}'",
        queue_database,
    )
    worker = await a.worker(worker_id="on-a")
    [again] = await worker.jobs(1, timeout=10)
    assert (again.job.id, again.attempt) == (job.id, 2)
    assert again.job.last_error.type == "LEASE_LOST"


async def test_a_watch_on_any_gateway_follows_a_delayed_job_run_through_another(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    a = await connect(await postgres_gateway())
    b = await connect(await postgres_gateway())
    job = await a.producer.enqueue(delay=Duration(seconds=1))
    watch = b.producer.stub.WatchJob(Q.WatchJobRequest(id=job.id))
    async with asyncio.timeout(FRAME_TIMEOUT):
        assert await _state(watch) == State.STATE_SCHEDULED
        # Due with no write at all: B's watcher is told all the same.
        assert await _state(watch) == State.STATE_PENDING
    worker = await a.worker(worker_id="on-a")
    [item] = await worker.jobs(1, timeout=FRAME_TIMEOUT)
    await worker.ack(item.lease_id)
    assert (await worker.result()).ok
    # Run and acked through A: B reads the changes of the jobs it watches.
    async with asyncio.timeout(FRAME_TIMEOUT):
        while await _state(watch) != State.STATE_COMPLETED:
            pass


async def _state(watch: grpc.aio.UnaryStreamCall[Q.WatchJobRequest, Q.WatchJobResponse]) -> int:
    frame = await watch.read()
    assert isinstance(frame, Q.WatchJobResponse)
    return frame.job.state
