"""Reading ``WatchJobs`` streams by selector, and following jobs across gateways."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import grpc

from jobwire.v1 import queue_service_pb2

from support import Producer, RawWorker, State
from timing import FRAME_TIMEOUT

Q = queue_service_pb2
TERMINAL = {State.STATE_COMPLETED, State.STATE_DEAD, State.STATE_CANCELLED}
Stream = grpc.aio.UnaryStreamCall[Q.WatchJobsRequest, Q.WatchJobsResponse]


class Frames:
    """What one selector stream sent, read until a condition holds."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.frames: list[Q.WatchJobsResponse] = []

    async def first(self) -> Q.WatchJobsResponse:
        frame = await self.stream.read()
        assert isinstance(frame, Q.WatchJobsResponse)
        self.frames.append(frame)
        return frame

    async def until_ended(self, job_ids: set[str]) -> None:
        """Read frames until every one of ``job_ids`` has been sent in a terminal state."""
        async with asyncio.timeout(FRAME_TIMEOUT * 3):
            while not job_ids <= self.ended():
                frame = await self.stream.read()
                assert isinstance(frame, Q.WatchJobsResponse), "the stream ended"
                self.frames.append(frame)

    def ended(self) -> set[str]:
        return {job.id for f in self.frames for job in f.jobs if job.state in TERMINAL}

    def ends(self) -> Counter[str]:
        return Counter(job.id for f in self.frames for job in f.jobs if job.state in TERMINAL)

    def last(self) -> dict[str, int]:
        return {job.id: job.state for f in self.frames for job in f.jobs}

    def one_entry_per_job_per_frame(self) -> bool:
        return all(len({job.id for job in f.jobs}) == len(f.jobs) for f in self.frames)


def watch(producer: Producer, **fields: Any) -> Frames:
    """Open a ``WatchJobs`` stream with these request fields."""
    return Frames(producer.stub.WatchJobs(Q.WatchJobsRequest(**fields)))


async def follow_across_gateways(a: Producer, b: Producer, worker_on_b: RawWorker) -> None:
    """A's streams see the jobs B enqueues and B's worker runs; every end once.

    ``worker_on_b`` takes the default queue, at least 4 jobs at a time.
    """
    # By ids: A follows a job it enqueued and B's worker completes.
    mine = await a.enqueue()
    by_id = watch(a, ids=[mine.id])
    [item] = await worker_on_b.jobs(1)
    await worker_on_b.ack(item.lease_id)
    await by_id.until_ended({mine.id})
    assert by_id.last() == {mine.id: State.STATE_COMPLETED}

    # By selector: one job that exists, two enqueued through B after the watch began.
    run = {"run": "across"}
    before = await a.enqueue(attributes=run)
    frames = watch(a, selector=Q.JobSelector(attributes=run))
    assert [job.id for job in (await frames.first()).jobs] == [before.id]
    later = [await b.enqueue(attributes=run) for _ in range(2)]
    await b.enqueue(attributes={"run": "other"})
    for item in await worker_on_b.jobs(4):
        await worker_on_b.ack(item.lease_id)
    watched = {before.id, *(job.id for job in later)}
    await frames.until_ended(watched)
    # A sentinel last: any stray copy of an earlier end would come before its end.
    sentinel = await b.enqueue(attributes=run)
    [item] = await worker_on_b.jobs(1)
    await worker_on_b.ack(item.lease_id)
    await frames.until_ended({sentinel.id})
    frames.stream.cancel()
    assert frames.ends() == Counter(watched | {sentinel.id}), "every end exactly once"
    assert set(frames.last()) == watched | {sentinel.id}
