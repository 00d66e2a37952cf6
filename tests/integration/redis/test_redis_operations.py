"""Operating queues on Redis across gateways: pause, purge, replay and workers are shared."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from integration.redis.conftest import ClientFactory, RedisGateway

from jobwire.v1 import job_pb2, queue_service_pb2, worker_service_pb2, worker_service_pb2_grpc

from support import Request, Response, State, eventually
from timing import QUIET

Q = queue_service_pb2
W = worker_service_pb2


async def test_pause_is_shared_by_gateways_and_survives_a_restart(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    first = await redis_gateway()
    a = await connect(first)
    b = await connect(await redis_gateway())
    worker = await b.worker(queues=["mail", "other"], max_in_flight=5)
    await a.producer.stub.PauseQueue(Q.PauseQueueRequest(queue="mail"))
    # Both gateways read the flag from Redis: no sync delay.
    [seen] = (await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))).queues
    assert seen.paused
    listed = (await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest())).queues
    assert [row.queue for row in listed if row.paused] == ["mail"]
    held = await a.producer.enqueue(queue="mail")
    flows = await a.producer.enqueue(queue="other")
    [item] = await worker.jobs(1)
    assert item.job.id == flows.id
    await worker.nothing("delivery", within=QUIET)

    await first.stop()
    restarted = await connect(await redis_gateway())
    [row] = (
        await restarted.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))
    ).queues
    assert (row.paused, row.pending) == (True, 1)
    await restarted.producer.stub.ResumeQueue(Q.ResumeQueueRequest(queue="mail"))
    # The resume is published on the wake channel: B's waiting claim looks at once.
    [item] = await worker.jobs(1)
    assert item.job.id == held.id


async def test_workers_of_every_gateway_are_listed_and_drained_from_any(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    a = await connect(await redis_gateway())
    b = await connect(await redis_gateway())
    on_a = await a.worker(worker_id="on-a", host="host-a", pid=1)
    on_b = await b.worker(worker_id="on-b", host="host-b", pid=2, queues=["mail"])
    stub = worker_service_pb2_grpc.WorkerServiceStub(a.channel)

    async def listed() -> dict[str, W.WorkerInfo]:
        workers = (await stub.ListWorkers(W.ListWorkersRequest())).workers
        return {w.worker_id: w for w in workers}

    await eventually(lambda: _has(listed, {"on-a", "on-b"}))
    workers = await listed()
    assert (workers["on-b"].host, workers["on-b"].pid) == ("host-b", 2)
    assert list(workers["on-b"].queues) == ["mail"]
    assert workers["on-a"].gateway != workers["on-b"].gateway

    drained = await stub.DrainWorker(W.DrainWorkerRequest(worker_id="on-b"))
    assert drained.drained == 1
    drain = (await on_b.expect("drain")).drain
    assert drain.reason == Response.Drain.REASON_OPERATOR
    await on_a.nothing("drain", within=QUIET)
    await eventually(lambda: _draining(listed, "on-b"))


async def _has(listed: Callable[[], Awaitable[dict[str, W.WorkerInfo]]], names: set[str]) -> bool:
    return set(await listed()) >= names


async def _draining(listed: Callable[[], Awaitable[dict[str, W.WorkerInfo]]], name: str) -> bool:
    return (await listed())[name].draining


async def test_purge_through_one_gateway_revokes_a_lease_held_by_another(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    a = await connect(await redis_gateway())
    b = await connect(await redis_gateway())
    job = await a.producer.enqueue(queue="mail")
    worker = await b.worker(queues=["mail"])
    [item] = await worker.jobs(1)
    purge = Q.PurgeJobsRequest(selector=Q.JobSelector(queue="mail"), include_processing=True)
    assert (await a.producer.stub.PurgeJobs(purge)).count == 1
    revoked = (await worker.expect("lease_revoked")).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (
        item.lease_id,
        Response.LeaseRevoked.REASON_CANCELLED,
    )
    await worker.ack(item.lease_id)
    assert not (await worker.result()).ok
    [row] = (await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))).queues
    assert (row.pending, row.processing, row.completed) == (0, 0, 0)
    assert job.id not in [j.id for j in (await b.producer.stub.ListJobs(Q.ListJobsRequest())).jobs]


async def test_retry_jobs_request_id_holds_across_gateways_and_batches(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    a = await connect(await redis_gateway())
    b = await connect(await redis_gateway())
    # More than one batch (1,000 jobs per script call).
    batch = [Q.EnqueueJobRequest(type="t", max_retries=0) for _ in range(750)]
    for _ in range(2):
        await a.producer.stub.EnqueueJobs(Q.EnqueueJobsRequest(requests=batch))
    worker = await b.worker(max_in_flight=500)
    failure = job_pb2.JobFailure(message="bug", type="RuntimeError")
    done = 0
    while done < 1500:
        items = await worker.jobs(1, timeout=60)
        nacks = [Request.Nack.Item(lease_id=i.lease_id, failure=failure) for i in items]
        await worker.send(Request(nack=Request.Nack(items=nacks)))
        await worker.expect("ack_result", timeout=60)
        done += len(items)
    worker.drop()
    request = Q.RetryJobsRequest(request_id="once")
    assert (await a.producer.stub.RetryJobs(request)).count == 1500
    assert (await b.producer.stub.RetryJobs(request)).count == 1500
    [row] = (await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))).queues
    assert (row.pending, row.dead) == (1500, 0)
    again = await b.producer.get((await a.producer.stub.ListJobs(Q.ListJobsRequest())).jobs[0].id)
    assert (again.state, again.attempt, [e.message for e in again.errors]) == (
        State.STATE_PENDING,
        0,
        ["bug"],
    )
