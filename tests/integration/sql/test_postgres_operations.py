"""Operating queues on PostgreSQL: pauses, workers and drains shared by every gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
import pytest
from integration.sql.conftest import SqlGateway
from integration.sqs.conftest import ClientFactory

from jobwire.v1 import job_pb2, queue_service_pb2, worker_service_pb2, worker_service_pb2_grpc

from postgres import psql
from support import Request, Response, State, eventually
from timing import QUIET

Q = queue_service_pb2
W = worker_service_pb2


async def test_pause_is_shared_by_gateways_and_survives_a_restart(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    first = await postgres_gateway()
    a = await connect(first)
    # B polls the table once a minute: only the resume's NOTIFY can wake it in time.
    b = await connect(await postgres_gateway(poll_interval=60))
    worker = await b.worker(queues=["mail", "other"], max_in_flight=5)
    await a.producer.stub.PauseQueue(Q.PauseQueueRequest(queue="mail"))
    # The pause is a row every gateway's claim reads: B holds it at once.
    [seen] = (await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))).queues
    assert seen.paused
    held = await a.producer.enqueue(queue="mail")
    flows = await a.producer.enqueue(queue="other")
    [item] = await worker.jobs(1)
    assert item.job.id == flows.id
    await worker.nothing("delivery", within=1.0)

    await first.stop()
    restarted = await connect(await postgres_gateway())
    [row] = (
        await restarted.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))
    ).queues
    assert (row.paused, row.pending) == (True, 1)
    await restarted.producer.stub.ResumeQueue(Q.ResumeQueueRequest(queue="mail"))
    [item] = await worker.jobs(1, timeout=30)
    assert item.job.id == held.id


async def test_workers_of_every_gateway_are_listed_and_drained_from_any(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    a = await connect(await postgres_gateway())
    b = await connect(await postgres_gateway())
    on_a = await a.worker(worker_id="on-a", host="host-a", pid=1)
    on_b = await b.worker(worker_id="on-b", host="host-b", pid=2)
    stub = worker_service_pb2_grpc.WorkerServiceStub(a.channel)

    async def listed() -> dict[str, W.WorkerInfo]:
        workers = (await stub.ListWorkers(W.ListWorkersRequest())).workers
        return {w.worker_id: w for w in workers}

    await eventually(lambda: _has(listed, {"on-a", "on-b"}))
    workers = await listed()
    assert (workers["on-b"].host, workers["on-b"].pid) == ("host-b", 2)
    assert workers["on-a"].gateway != workers["on-b"].gateway

    drained = await stub.DrainWorker(W.DrainWorkerRequest(worker_id="on-b"))
    assert drained.drained == 1
    drain = (await on_b.expect("drain")).drain
    assert drain.reason == Response.Drain.REASON_OPERATOR
    await on_a.nothing("drain", within=QUIET)


async def _has(listed: Callable[[], Awaitable[dict[str, W.WorkerInfo]]], names: set[str]) -> bool:
    return set(await listed()) >= names


async def test_a_version_1_database_is_migrated_to_this_version(
    postgres_gateway: SqlGateway, connect: ClientFactory, queue_database: str
) -> None:
    first = await postgres_gateway()
    job = await (await connect(first)).producer.enqueue(queue="mail")
    await first.stop()
    # Version 1 had jobs and gateways only (version 3 added flow control,
    # version 4 made jobwire_jobs_key partial).
    psql(
        "DROP TABLE jobwire_paused_queues, jobwire_replay_requests, jobwire_workers, "
        "jobwire_queue_flow; ALTER TABLE jobwire_jobs DROP COLUMN concurrency_key; "
        "DROP INDEX jobwire_jobs_key; "
        "CREATE INDEX jobwire_jobs_key ON jobwire_jobs (deduplication_key); "
        "UPDATE jobwire_queue_schema SET version = 1",
        queue_database,
    )
    upgraded = await connect(await postgres_gateway())
    assert psql("SELECT version FROM jobwire_queue_schema", queue_database) == "4"
    await upgraded.producer.stub.PauseQueue(Q.PauseQueueRequest(queue="mail"))
    [row] = (
        await upgraded.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))
    ).queues
    assert (row.paused, row.pending) == (True, 1)
    old = await upgraded.producer.get(job.id)
    assert (old.queue, old.concurrency_key) == ("mail", "")
    keyed = await upgraded.producer.enqueue(queue="mail", concurrency_key="customer-7")
    assert (await upgraded.producer.get(keyed.id)).concurrency_key == "customer-7"
    indexes = psql(
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes "
        "WHERE indexname IN ('jobwire_jobs_lanes', 'jobwire_jobs_running')",
        queue_database,
    )
    assert indexes == "jobwire_jobs_lanes,jobwire_jobs_running"
    key_index = psql(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'jobwire_jobs_key'", queue_database
    )
    assert key_index.endswith("WHERE (deduplication_key IS NOT NULL)")


async def test_a_purge_through_one_gateway_revokes_the_lease_held_on_the_other(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    a = await connect(await postgres_gateway())
    b = await connect(await postgres_gateway())
    worker = await b.worker(worker_id="on-b")
    job = await a.producer.enqueue(queue="default")
    [held] = await worker.jobs(1)
    everything = Q.PurgeJobsRequest(all=True, include_processing=True)
    assert (await a.producer.stub.PurgeJobs(everything)).count == 1
    revoked = (await worker.expect("lease_revoked")).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (
        held.lease_id,
        Response.LeaseRevoked.REASON_CANCELLED,
    )
    assert "purged" in revoked.message
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await b.producer.get(job.id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_one_retry_jobs_request_sent_to_two_gateways_at_once_replays_once(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    a = await connect(await postgres_gateway())
    b = await connect(await postgres_gateway())
    worker = await a.worker(max_in_flight=50)
    jobs = [await a.producer.enqueue(max_retries=0) for _ in range(50)]
    failure = job_pb2.JobFailure(message="bug", type="RuntimeError")
    items = await worker.jobs(50)
    nacks = [Request.Nack.Item(lease_id=i.lease_id, failure=failure) for i in items]
    await worker.send(Request(nack=Request.Nack(items=nacks)))
    for job in jobs:
        await a.producer.wait_state(job.id, State.STATE_DEAD)
    worker.drop()
    request = Q.RetryJobsRequest(selector=Q.JobSelector(queue="default"), request_id="twice")
    first, second = await asyncio.gather(
        a.producer.stub.RetryJobs(request), b.producer.stub.RetryJobs(request)
    )
    assert (first.count, second.count) == (50, 50)
    [row] = (await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))).queues
    assert (row.pending, row.dead) == (50, 0)
    assert {(await b.producer.get(job.id)).attempt for job in jobs} == {0}


async def test_a_retry_jobs_request_id_is_forgotten_with_the_history(
    postgres_gateway: SqlGateway, connect: ClientFactory, queue_database: str
) -> None:
    client = await connect(
        await postgres_gateway(history_retention=0.5, prune_interval=0.2, heartbeat_interval=0.1)
    )
    request = Q.RetryJobsRequest(selector=Q.JobSelector(queue="mail"), request_id="old")
    assert (await client.producer.stub.RetryJobs(request)).count == 0
    assert psql("SELECT count(*) FROM jobwire_replay_requests", queue_database) == "1"

    def forgotten() -> bool:
        return psql("SELECT count(*) FROM jobwire_replay_requests", queue_database) == "0"

    await eventually(forgotten)
