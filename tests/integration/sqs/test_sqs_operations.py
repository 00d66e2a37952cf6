"""Operating queues on SQS: shared through the records database; replay is a DLQ redrive."""

from __future__ import annotations

import grpc
import pytest
from integration.sqs.conftest import ClientFactory, SqsGateway

from jobwire.gateway.providers.sqs import SqsProvider
from jobwire.v1 import (
    job_pb2,
    queue_service_pb2,
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)

from sqs_support import SqsQueues, queue_counts
from support import Request, Response, State, eventually, seconds
from timing import QUIET

Q = queue_service_pb2
W = worker_service_pb2
S = schedule_service_pb2


async def test_pause_is_shared_by_gateways_and_survives_a_restart(
    sqs_gateway: SqsGateway, postgres_url: str, connect: ClientFactory
) -> None:
    shared = {"scheduler": {"database_url": postgres_url}, "sync_interval": 0.2}
    first = await sqs_gateway(**shared)
    a = await connect(first)
    second = await sqs_gateway(**shared)
    b = await connect(second)
    worker = await b.worker(queues=["mail", "other"], max_in_flight=5)
    await a.producer.stub.PauseQueue(Q.PauseQueueRequest(queue="mail"))
    # The other gateway follows on its next sync (sync_interval).
    assert isinstance(second.provider, SqsProvider)
    provider = second.provider
    await eventually(lambda: "mail" in provider.paused)
    [seen] = (await b.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))).queues
    assert seen.paused
    held = await a.producer.enqueue(queue="mail")
    flows = await a.producer.enqueue(queue="other")
    [item] = await worker.jobs(1)
    assert item.job.id == flows.id
    await worker.nothing("delivery", within=1.0)

    await first.stop()
    restarted = await connect(await sqs_gateway(**shared))
    [row] = (
        await restarted.producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))
    ).queues
    assert row.paused
    await restarted.producer.stub.ResumeQueue(Q.ResumeQueueRequest(queue="mail"))
    # B reads the resume on its next sync and receives from the queue again.
    [item] = await worker.jobs(1)
    assert item.job.id == held.id


async def test_workers_of_every_gateway_are_listed_and_drained_from_any(
    sqs_gateway: SqsGateway, postgres_url: str, connect: ClientFactory
) -> None:
    shared = {"scheduler": {"database_url": postgres_url}, "sync_interval": 0.2}
    a = await connect(await sqs_gateway(**shared))
    b = await connect(await sqs_gateway(**shared))
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


async def _has(listed: object, names: set[str]) -> bool:
    assert callable(listed)
    return set(await listed()) >= names


async def test_replay_redrives_a_dead_job_out_of_the_dead_letter_queue(
    sqs_gateway: SqsGateway, sqs_queues: SqsQueues, connect: ClientFactory
) -> None:
    client = await connect(await sqs_gateway())
    job = await client.producer.enqueue(max_retries=0)
    worker = await client.worker()
    [item] = await worker.jobs(1)
    failure = job_pb2.JobFailure(message="bug", type="RuntimeError")
    await worker.send(
        Request(
            nack=Request.Nack(items=[Request.Nack.Item(lease_id=item.lease_id, failure=failure)])
        )
    )
    await client.producer.wait_state(job.id, State.STATE_DEAD)
    dlq = sqs_queues.dead_letter_queue_url

    async def in_dlq(count: int) -> bool:
        counts = await queue_counts(sqs_queues.endpoint, dlq)
        held = (
            counts["ApproximateNumberOfMessages"] + counts["ApproximateNumberOfMessagesNotVisible"]
        )
        return held == count

    await eventually(lambda: in_dlq(1))
    await client.producer.stub.RetryJob(Q.RetryJobRequest(id=job.id))
    [again] = await worker.jobs(1)
    assert (again.job.id, again.attempt) == (job.id, 1)
    await worker.ack(again.lease_id)
    done = await client.producer.wait_state(job.id, State.STATE_COMPLETED)
    assert [e.message for e in done.errors] == ["bug"]
    await eventually(lambda: in_dlq(0))


async def test_pausing_a_queue_sqs_does_not_have_is_invalid(
    sqs_gateway: SqsGateway, connect: ClientFactory
) -> None:
    client = await connect(await sqs_gateway())
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client.producer.stub.PauseQueue(Q.PauseQueueRequest(queue="nowhere"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "default, mail, other" in (raised.value.details() or "")


async def test_failed_jobs_are_not_replayed_on_sqs(
    sqs_gateway: SqsGateway, connect: ClientFactory
) -> None:
    client = await connect(await sqs_gateway())
    request = Q.RetryJobsRequest(selector=Q.JobSelector(states=[State.STATE_FAILED]))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await client.producer.stub.RetryJobs(request)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "dead and cancelled" in (raised.value.details() or "")


async def test_a_schedule_with_a_priority_is_refused_on_sqs(
    sqs_gateway: SqsGateway, connect: ClientFactory
) -> None:
    client = await connect(await sqs_gateway())
    stub = schedule_service_pb2_grpc.ScheduleServiceStub(client.channel)
    urgent = S.Schedule(
        name="urgent", job_template=S.JobTemplate(type="t", priority=8), interval=seconds(60)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.CreateSchedule(S.CreateScheduleRequest(schedule=urgent))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "schedule.job_template.priority" in (raised.value.details() or "")
