"""ListJobs, GetQueueStats and WatchJob, on every provider."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from jobwire.v1 import job_pb2, queue_service_pb2

from backends import CONTRACT
from support import Producer, RawWorker, State, seconds

pytestmark = CONTRACT
OpenWorker = Callable[..., Awaitable[RawWorker]]
Q = queue_service_pb2


async def test_list_jobs_pages_newest_first_with_filters(producer: Producer) -> None:
    ids = [(await producer.enqueue(type="a" if i % 2 else "b", payload=b"p")).id for i in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await producer.stub.ListJobs(Q.ListJobsRequest(page_size=3, page_token=token))
        pages += 1
        seen.extend(job.id for job in page.jobs)
        assert all(job.payload == b"" for job in page.jobs), "BASIC view omits payloads"
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    assert pages == 3
    only_a = await producer.stub.ListJobs(Q.ListJobsRequest(type="a"))
    assert [job.id for job in only_a.jobs] == [ids[i] for i in (5, 3, 1)]
    full = await producer.stub.ListJobs(Q.ListJobsRequest(page_size=1, view=job_pb2.JOB_VIEW_FULL))
    assert full.jobs[0].payload == b"p"


async def test_list_jobs_by_state_and_queue(producer: Producer, raw_worker: OpenWorker) -> None:
    later = await producer.enqueue(delay=seconds(60))
    other_queue = await producer.enqueue(queue="other")
    now = await producer.enqueue()
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    assert item.job.id == now.id

    async def listed(**fields: Any) -> list[str]:
        return [job.id for job in (await producer.stub.ListJobs(Q.ListJobsRequest(**fields))).jobs]

    assert await listed(states=[State.STATE_SCHEDULED]) == [later.id]
    assert await listed(states=[State.STATE_PROCESSING]) == [now.id]
    assert await listed(queue="other") == [other_queue.id]
    both = await listed(states=[State.STATE_SCHEDULED, State.STATE_PROCESSING])
    assert both == [now.id, later.id]


async def test_queue_stats_count_every_state(
    producer: Producer, raw_worker: OpenWorker, provider_kind: str
) -> None:
    await producer.enqueue(delay=seconds(60))
    cancelled = await producer.enqueue(delay=seconds(60))
    await producer.stub.CancelJob(Q.CancelJobRequest(id=cancelled.id))
    for _ in range(3):
        await producer.enqueue()
    await producer.enqueue(queue="other")
    worker = await raw_worker(max_in_flight=2)
    done, dead = await worker.jobs(2)
    await worker.ack(done.lease_id)
    await worker.nack(dead.lease_id, retryable=False)
    await producer.wait_state(dead.job.id, State.STATE_DEAD)
    [held] = await worker.jobs(1)
    stats = await producer.stub.GetQueueStats(Q.GetQueueStatsRequest())
    by_queue = {q.queue: q for q in stats.queues}
    assert sorted(by_queue) == ["default", "other"]
    default = by_queue["default"]
    counts = (
        default.pending,
        default.scheduled,
        default.processing,
        default.completed,
        default.dead,
        default.cancelled,
        default.workers,
    )
    assert counts == (0, 1, 1, 1, 1, 1, 1)
    other = by_queue["other"]
    assert (other.pending, other.workers) == (1, 0)
    assert other.oldest_pending_age.ToNanoseconds() > 0
    one = await producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="other"))
    assert [q.queue for q in one.queues] == ["other"]
    assert held.job.id
    if provider_kind == "sqs":
        # SQS's own view, approximate by nature (deletes are batched): the held
        # job in flight, the delayed ones delayed, the one in "other" visible.
        assert default.backend.in_flight >= 1
        assert default.backend.delayed >= 1
        assert other.backend.visible == 1
    elif provider_kind == "rabbitmq":
        # The broker's ready messages; in flight: those unacked on this gateway.
        assert default.backend.in_flight == 1
        assert other.backend.visible == 1
    else:
        assert not default.HasField("backend")


async def test_watch_job_streams_until_terminal(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue()
    request = Q.WatchJobRequest(id=job.id, view=job_pb2.JOB_VIEW_FULL)
    stream = producer.stub.WatchJob(request)
    first = await stream.read()
    assert isinstance(first, Q.WatchJobResponse)
    assert first.job.state == State.STATE_PENDING
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id, result=b"done")
    states = [first.job.state]
    last = first
    while (update := await stream.read()) is not grpc.aio.EOF:
        assert isinstance(update, Q.WatchJobResponse)
        states.append(update.job.state)
        last = update
    assert states == [State.STATE_PENDING, State.STATE_PROCESSING, State.STATE_COMPLETED]
    assert last.job.result == b"done"
