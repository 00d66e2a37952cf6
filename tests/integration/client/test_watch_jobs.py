"""client.watch_jobs(...): every change of the jobs a filter matches, sync and async."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

import pytest

from jobwire.client import AsyncClient, Client, InvalidArgumentError, Job, JobRequest, JobState
from jobwire.gateway import EmbeddedGateway
from jobwire.worker import HandlerRegistry, JobContext, Worker

from support import RawWorker
from timing import FRAME_TIMEOUT

OpenWorker = Callable[..., Awaitable[RawWorker]]

registry = HandlerRegistry()


@registry.handler("thumb")
async def thumb(ctx: JobContext) -> int:
    return int(ctx.payload) * 2


@pytest.fixture
def worker(embedded_gateway: EmbeddedGateway) -> Iterator[Worker]:
    """An SDK worker for `thumb` jobs, in its background thread."""
    running = Worker(embedded_gateway.address, registry=registry, concurrency=8)
    running.start()
    yield running
    running.stop(10)


def ends(jobs: list[Job]) -> Counter[str]:
    return Counter(job.id for job in jobs if job.state.is_terminal)


def test_sync_watch_jobs_follows_a_batch_by_attribute(sync_client: Client, worker: Worker) -> None:
    batch = {"batch": "photos-1"}
    done_before = sync_client.enqueue("thumb", 1, attributes=batch)
    sync_client.wait(done_before)
    others = sync_client.enqueue_many([JobRequest("thumb", n) for n in range(3)])
    seen: list[Job] = []
    later: list[Job] = []
    for job in sync_client.watch_jobs(attributes=batch, full=True):
        seen.append(job)
        if not later:
            # The stream is open once the first job came: enqueue the rest now.
            later = sync_client.enqueue_many(
                [JobRequest("thumb", n, attributes=batch) for n in range(10)]
            )
        if ends(seen).keys() >= {job.id for job in [done_before, *later]}:
            break
    assert ends(seen) == Counter(job.id for job in [done_before, *later]), "each end once"
    assert not {job.id for job in others} & {job.id for job in seen}
    finished = {job.id: job for job in seen if job.state.is_terminal}
    assert {finished[job.id].result for job in later} == {2 * n for n in range(10)}
    assert finished[done_before.id].state is JobState.COMPLETED


async def test_async_watch_jobs_by_queue_since_a_time(
    client: AsyncClient, raw_worker: OpenWorker
) -> None:
    before = await client.enqueue("t", queue="mail")
    since = datetime.now(UTC)
    # Created after `since`: matched whether the stream opens before or after them.
    new = [await client.enqueue("t", queue="mail") for _ in range(5)]
    await client.enqueue("t", queue="default")
    seen: list[Job] = []

    async def follow() -> None:
        stream = client.watch_jobs(queue="mail", created_after=since)
        async with contextlib.aclosing(stream):
            async for job in stream:
                seen.append(job)
                if ends(seen).keys() >= {job.id for job in new}:
                    return

    following = asyncio.create_task(follow())
    worker = await raw_worker(queues=["mail"], max_in_flight=8)
    async with asyncio.timeout(FRAME_TIMEOUT):
        for item in await worker.jobs(len(new) + 1):
            await worker.ack(item.lease_id)
        await following
    assert ends(seen) == Counter(job.id for job in new), "each end once, nothing else"
    assert before.id not in {job.id for job in seen}


def test_bad_filters_raise_invalid_argument(sync_client: Client) -> None:
    with pytest.raises(InvalidArgumentError) as naive:
        next(sync_client.watch_jobs(created_after=datetime(2026, 1, 1)))  # noqa: DTZ001
    assert "created_after" in str(naive.value)
    with pytest.raises(InvalidArgumentError) as empty_key:
        next(sync_client.watch_jobs(attributes={"": "x"}))
    assert "selector.attributes" in str(empty_key.value)
