"""WatchJobs by selector: the jobs matching at the start, then new ones, each end once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import grpc
import pytest

from jobwire.v1 import job_pb2, queue_service_pb2

from backends import CONTRACT
from support import Producer, RawWorker, State, seconds
from timing import FRAME_TIMEOUT
from watching import TERMINAL, watch

pytestmark = CONTRACT
OpenWorker = Callable[..., Awaitable[RawWorker]]
Q = queue_service_pb2


async def test_jobs_matching_at_the_start_and_later_each_end_once(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    batch = {"batch": "b-1"}
    worker = await raw_worker(queues=["mail"], max_in_flight=16)
    early = [await producer.enqueue(queue="mail", attributes=batch) for _ in range(3)]
    other = await producer.enqueue(queue="mail", attributes={"batch": "b-2"})
    elsewhere = await producer.enqueue(queue="default", attributes=batch)
    items = {item.job.id: item for item in await worker.jobs(4)}
    await worker.ack(items[early[0].id].lease_id, items[early[1].id].lease_id)
    assert (await worker.result()).ok
    await producer.stub.CancelJob(Q.CancelJobRequest(id=early[2].id, reason="not needed"))
    await worker.expect("lease_revoked")
    await producer.wait_state(early[0].id, State.STATE_COMPLETED)
    await producer.wait_state(early[1].id, State.STATE_COMPLETED)
    # Matching at the start: two completed, one cancelled; one pending or running.
    waiting = await producer.enqueue(queue="mail", attributes=batch)

    frames = watch(producer, selector=Q.JobSelector(queue="mail", attributes=batch))
    first = await frames.first()
    at_start = {job.id: job.state for job in first.jobs}
    assert at_start.pop(waiting.id) in {State.STATE_PENDING, State.STATE_PROCESSING}
    assert at_start == {
        early[0].id: State.STATE_COMPLETED,
        early[1].id: State.STATE_COMPLETED,
        early[2].id: State.STATE_CANCELLED,
    }, "every matching job, with its current state, in frame one"

    # Matching later: enqueued after the watch began.
    late = [await producer.enqueue(queue="mail", attributes=batch) for _ in range(3)]
    await producer.enqueue(queue="mail", attributes={"batch": "b-2"})
    for item in await worker.jobs(5):
        await worker.ack(item.lease_id)
    await worker.ack(items[other.id].lease_id)
    watched = {job.id for job in [*early, waiting, *late]}
    await frames.until_ended(watched)

    # A sentinel enqueued and cancelled last: its end comes after any stray copy.
    sentinel = await producer.enqueue(queue="mail", attributes=batch, delay=seconds(3600))
    await producer.stub.CancelJob(Q.CancelJobRequest(id=sentinel.id))
    await frames.until_ended({sentinel.id})
    frames.stream.cancel()

    assert frames.ends() == Counter(watched | {sentinel.id}), "every end exactly once"
    assert set(frames.last()) == watched | {sentinel.id}, "nothing the selector does not match"
    assert frames.last() == {
        **{job_id: State.STATE_COMPLETED for job_id in watched},
        early[2].id: State.STATE_CANCELLED,
        sentinel.id: State.STATE_CANCELLED,
    }
    assert frames.one_entry_per_job_per_frame()
    assert elsewhere.id not in frames.last()


async def test_a_job_replayed_after_its_end_is_followed_to_its_next_end(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue(type="replayed", max_retries=0)
    worker = await raw_worker(job_types=["replayed"], max_in_flight=2)
    [item] = await worker.jobs(1)
    await worker.nack(item.lease_id, "bug", retryable=False)
    await producer.wait_state(job.id, State.STATE_DEAD)
    frames = watch(producer, selector=Q.JobSelector(type="replayed"))
    assert [j.state for j in (await frames.first()).jobs] == [State.STATE_DEAD]
    await producer.stub.RetryJob(Q.RetryJobRequest(id=job.id))
    [again] = await worker.jobs(1)
    await worker.ack(again.lease_id)
    async with asyncio.timeout(FRAME_TIMEOUT * 3):
        while frames.last().get(job.id) != State.STATE_COMPLETED:
            frame = await frames.stream.read()
            assert isinstance(frame, Q.WatchJobsResponse)
            frames.frames.append(frame)
    frames.stream.cancel()
    ends = [j.state for f in frames.frames for j in f.jobs if j.state in TERMINAL]
    assert ends == [State.STATE_DEAD, State.STATE_COMPLETED], "each end once"


async def test_only_new_skips_the_jobs_that_exist(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    before = await producer.enqueue(type="only-new")
    frames = watch(
        producer,
        selector=Q.JobSelector(type="only-new"),
        only_new=True,
        view=job_pb2.JOB_VIEW_FULL,
    )
    first = await frames.first()
    assert list(first.jobs) == [], "the first frame comes at once, empty"
    new = [await producer.enqueue(type="only-new", payload=b'{"n": 1}') for _ in range(2)]
    worker = await raw_worker(job_types=["only-new"], max_in_flight=4)
    for item in await worker.jobs(3):
        await worker.ack(item.lease_id, result=b"done")
    await frames.until_ended({job.id for job in new})
    frames.stream.cancel()
    assert before.id not in frames.last()
    assert frames.ends() == Counter(job.id for job in new)
    full = [job for f in frames.frames for job in f.jobs if job.state == State.STATE_COMPLETED]
    assert {(job.payload, job.result) for job in full} == {(b'{"n": 1}', b"done")}, "FULL view"


async def test_a_selector_by_ids_and_creation_time(producer: Producer) -> None:
    jobs = [await producer.enqueue(type="by-ids") for _ in range(3)]
    selector = Q.JobSelector(ids=[jobs[0].id, jobs[1].id])
    selector.create_time_after.FromSeconds(1)
    frames = watch(producer, selector=selector)
    first = await frames.first()
    assert sorted(job.id for job in first.jobs) == sorted([jobs[0].id, jobs[1].id])
    for job in jobs:
        await producer.stub.CancelJob(Q.CancelJobRequest(id=job.id))
    await frames.until_ended({jobs[0].id, jobs[1].id})
    frames.stream.cancel()
    assert jobs[2].id not in frames.last()


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (Q.WatchJobsRequest(selector=Q.JobSelector(states=[State.STATE_DEAD])), "selector.states"),
        (Q.WatchJobsRequest(selector=Q.JobSelector(error_contains="x")), "selector.error_contains"),
        (Q.WatchJobsRequest(ids=["abc"], selector=Q.JobSelector(queue="q")), "ids"),
        (Q.WatchJobsRequest(selector=Q.JobSelector(queue="bad queue")), "selector.queue"),
        (Q.WatchJobsRequest(selector=Q.JobSelector(attributes={"": "x"})), "selector.attributes"),
        (Q.WatchJobsRequest(ids=["abcdefgh"], only_new=True), "only_new"),
    ],
)
async def test_bad_selectors_are_invalid_arguments_naming_the_field(
    producer: Producer, request_: Q.WatchJobsRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async with asyncio.timeout(FRAME_TIMEOUT):
            await producer.stub.WatchJobs(request_).read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(f"{field}:")


async def test_bulk_operations_select_by_attributes_too(producer: Producer) -> None:
    tagged = [await producer.enqueue(type="tagged", attributes={"run": "7"}) for _ in range(2)]
    await producer.enqueue(type="tagged", attributes={"run": "8"})
    await producer.enqueue(type="tagged")
    selector = Q.JobSelector(type="tagged", attributes={"run": "7"})
    dry = await producer.stub.PurgeJobs(Q.PurgeJobsRequest(selector=selector, validate_only=True))
    assert dry.count == 2
    for job in tagged:
        await producer.stub.CancelJob(Q.CancelJobRequest(id=job.id))
    named = Q.JobSelector(ids=[job.id for job in tagged], attributes={"run": "8"})
    retried = await producer.stub.RetryJobs(Q.RetryJobsRequest(selector=named))
    assert retried.count == 0, "the named jobs carry run=7"


async def test_a_selector_watch_hears_a_delayed_job_come_due(producer: Producer) -> None:
    # The job is enqueued after the watch started: the selector picks it up,
    # and its coming due (no write on the SQL providers) is heard all the same.
    frames = watch(producer, selector=Q.JobSelector(queue="other"), only_new=True)
    async with asyncio.timeout(FRAME_TIMEOUT):
        await frames.first()
    job = await producer.enqueue(queue="other", delay=seconds(1))
    async with asyncio.timeout(FRAME_TIMEOUT):
        while frames.last().get(job.id) != State.STATE_PENDING:
            frame = await frames.stream.read()
            assert isinstance(frame, Q.WatchJobsResponse)
            frames.frames.append(frame)
    states = [j.state for f in frames.frames for j in f.jobs if j.id == job.id]
    assert states[0] == State.STATE_SCHEDULED
    frames.stream.cancel()
