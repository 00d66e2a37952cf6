"""WatchJobs: many jobs on one stream, every terminal state exactly once, on every provider."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from jobwire.v1 import job_pb2, queue_service_pb2

from backends import CONTRACT
from support import Producer, RawWorker, State
from timing import FRAME_TIMEOUT

pytestmark = CONTRACT
OpenWorker = Callable[..., Awaitable[RawWorker]]
Q = queue_service_pb2
TERMINAL = {State.STATE_COMPLETED, State.STATE_DEAD, State.STATE_CANCELLED}


async def read_all(
    stream: grpc.aio.UnaryStreamCall[Q.WatchJobsRequest, Q.WatchJobsResponse],
) -> list[Q.WatchJobsResponse]:
    frames: list[Q.WatchJobsResponse] = []
    async with asyncio.timeout(FRAME_TIMEOUT * 3):
        while (frame := await stream.read()) is not grpc.aio.EOF:
            assert isinstance(frame, Q.WatchJobsResponse)
            frames.append(frame)
    return frames


async def test_every_terminal_state_comes_once_including_jobs_finished_before_the_watch(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(max_in_flight=8)
    early = [await producer.enqueue() for _ in range(3)]
    items = await worker.jobs(3)
    by_job = {item.job.id: item for item in items}
    for job in early[:2]:
        await worker.ack(by_job[job.id].lease_id, result=b"early")
        assert (await worker.result()).ok
    await producer.stub.CancelJob(Q.CancelJobRequest(id=early[2].id, reason="not needed"))
    await worker.expect("lease_revoked")
    late = [await producer.enqueue() for _ in range(3)]
    ids = [job.id for job in early + late]

    # Finished before the watch: two completed, one cancelled; the others pending or leased.
    stream = producer.stub.WatchJobs(Q.WatchJobsRequest(ids=[*ids, ids[0]]))
    first = await stream.read()
    assert isinstance(first, Q.WatchJobsResponse)
    assert sorted(job.id for job in first.jobs) == sorted(ids), "every job, once, in frame one"
    for item in await worker.jobs(3):
        await worker.ack(item.lease_id)
    frames = [first, *await read_all(stream)]

    ends: Counter[str] = Counter()
    last: dict[str, int] = {}
    for frame in frames:
        assert len({job.id for job in frame.jobs}) == len(frame.jobs), "a job once per frame"
        for job in frame.jobs:
            assert job.id not in ends, f"{job.id} changed after its end was sent"
            last[job.id] = job.state
            if job.state in TERMINAL:
                ends[job.id] += 1
    assert ends == Counter(ids)
    assert last == {
        **{job.id: State.STATE_COMPLETED for job in early[:2] + late},
        early[2].id: State.STATE_CANCELLED,
    }
    assert all(job.payload == b"" for frame in frames for job in frame.jobs), "BASIC view"


async def test_a_watch_of_finished_jobs_sends_one_frame_and_ends(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    jobs = [await producer.enqueue() for _ in range(2)]
    for job in jobs:
        await producer.stub.CancelJob(Q.CancelJobRequest(id=job.id))
    request = Q.WatchJobsRequest(ids=[job.id for job in jobs], view=job_pb2.JOB_VIEW_FULL)
    frames = await read_all(producer.stub.WatchJobs(request))
    assert [sorted((job.id, job.state) for job in frame.jobs) for frame in frames] == [
        sorted((job.id, State.STATE_CANCELLED) for job in jobs)
    ]
    assert all(job.payload == b"{}" for job in frames[0].jobs), "FULL view"


async def test_watchers_hear_a_delayed_job_come_due_though_nothing_writes_it(
    producer: Producer,
) -> None:
    # Held natively (SQL: a row whose run_at passes), the job changes state
    # with no write when its time comes; its watchers are told all the same.
    job = await producer.enqueue(delay=Duration(seconds=1))
    assert job.state == State.STATE_SCHEDULED
    due = job.schedule_time.ToDatetime(UTC).timestamp()
    one = producer.stub.WatchJob(Q.WatchJobRequest(id=job.id))
    many = producer.stub.WatchJobs(Q.WatchJobsRequest(ids=[job.id]))
    async with asyncio.timeout(FRAME_TIMEOUT):
        first, first_many = await one.read(), await many.read()
        assert isinstance(first, Q.WatchJobResponse)
        assert isinstance(first_many, Q.WatchJobsResponse)
        assert (first.job.state, first_many.jobs[0].state) == (State.STATE_SCHEDULED,) * 2
        came, came_many = await one.read(), await many.read()
    heard = time.time()
    assert isinstance(came, Q.WatchJobResponse)
    assert isinstance(came_many, Q.WatchJobsResponse)
    assert (came.job.state, came_many.jobs[0].state) == (State.STATE_PENDING,) * 2
    assert heard >= due, "told before the job was due"
    one.cancel()
    many.cancel()


async def test_an_unknown_id_is_not_found_and_no_ids_is_invalid(producer: Producer) -> None:
    job = await producer.enqueue()
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await read_all(producer.stub.WatchJobs(Q.WatchJobsRequest(ids=[job.id, "no-such-job"])))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-job" in (unknown.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await read_all(producer.stub.WatchJobs(Q.WatchJobsRequest()))
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ids" in (empty.value.details() or "")


async def test_a_unique_id_prefix_names_its_job(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue()
    stream = producer.stub.WatchJobs(Q.WatchJobsRequest(ids=[job.id[:12]]))
    first = await stream.read()
    assert isinstance(first, Q.WatchJobsResponse)
    assert [(j.id, j.state) for j in first.jobs] == [(job.id, State.STATE_PENDING)]
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id)
    frames = await read_all(stream)
    assert [j.state for frame in frames for j in frame.jobs][-1] == State.STATE_COMPLETED
    assert all(j.id == job.id for frame in frames for j in frame.jobs)
