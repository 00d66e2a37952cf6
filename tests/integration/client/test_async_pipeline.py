"""AsyncClient.pipeline(): the asyncio twin of the blocking pipelined producer.

Mirrors test_pipeline.py: the same error contract (a refused job fails its
own handle and one report; nothing is lost or stored twice), against a real
gateway.
"""

from __future__ import annotations

import asyncio

import pytest

from jobwire.client import (
    AsyncClient,
    AsyncPendingJob,
    EnqueueFailedError,
    GatewayUnavailableError,
    InvalidArgumentError,
    Job,
    JobwireError,
    PipelineFullError,
    RetryConfig,
    StatusCode,
)
from jobwire.gateway import Gateway

BAD_QUEUE = "bad queue!"  # the gateway refuses it; the client sends it as it is


async def pending_count(client: AsyncClient, queue: str) -> int:
    [row] = await client.stats(queue)
    return row.pending


async def test_jobs_enqueued_at_once_are_stored_in_order_and_each_handle_gives_its_job(
    client: AsyncClient,
) -> None:
    async with client.pipeline() as pipe:
        handles = [pipe.enqueue("t", {"n": n}, queue="piped") for n in range(50)]
        assert not any(handle.done() for handle in handles), "enqueue only queues"
    assert all(handle.done() for handle in handles), "aclose() flushed"
    jobs = await asyncio.gather(*handles)  # a handle is an awaitable like any other
    assert all(isinstance(job, Job) for job in jobs)
    assert [job.payload for job in jobs] == [{"n": n} for n in range(50)]
    assert len({job.id for job in jobs}) == 50
    assert [handle.result() for handle in handles] == jobs
    assert await pending_count(client, "piped") == 50
    assert (await client.get_job(jobs[7].id)).payload == {"n": 7}


async def test_a_handle_can_be_awaited_before_any_flush(client: AsyncClient) -> None:
    async with client.pipeline() as pipe:
        handle = pipe.enqueue("t", "now", queue="awaited")
        with pytest.raises(asyncio.InvalidStateError, match="await the handle"):
            handle.result()
        job = await handle
        assert job.payload == "now"
        assert handle.exception() is None
        assert pipe.unanswered == 0


async def test_a_refused_job_fails_its_own_handle_and_one_flush_and_the_others_are_stored(
    client: AsyncClient,
) -> None:
    pipe = client.pipeline()
    handles: list[AsyncPendingJob] = []
    for n in range(60):
        handles.append(pipe.enqueue("t", n, queue="piped"))
        if n == 30:
            bad = pipe.enqueue("t", n, queue=BAD_QUEUE)
    with pytest.raises(EnqueueFailedError) as failed:
        await pipe.flush()
    assert failed.value.failures == [bad]
    assert failed.value.code is StatusCode.INVALID_ARGUMENT
    assert isinstance(failed.value.failures[0].exception(), InvalidArgumentError)
    with pytest.raises(InvalidArgumentError, match="queue"):
        await bad
    assert isinstance(bad.exception(), InvalidArgumentError)
    jobs = [await handle for handle in handles]
    assert [job.payload for job in jobs] == list(range(60)), "every job, in order"
    assert len({job.id for job in jobs}) == 60
    # Nothing lost, nothing stored twice (a refused batch is resent job by job).
    assert await pending_count(client, "piped") == 60
    await pipe.flush()  # the failure was reported once
    await pipe.aclose()


async def test_aclose_reports_the_failures_no_flush_reported_and_then_refuses_jobs(
    client: AsyncClient,
) -> None:
    pipe = client.pipeline()
    good = pipe.enqueue("t", 1, queue="closing")
    bad = pipe.enqueue("t", 2, queue=BAD_QUEUE)
    with pytest.raises(EnqueueFailedError) as failed:
        await pipe.aclose()
    assert failed.value.failures == [bad]
    assert (await good).queue == "closing"
    assert pipe.is_closed
    with pytest.raises(RuntimeError, match="AsyncPipeline is closed"):
        pipe.enqueue("t", 3)
    await pipe.aclose()  # closing again reports nothing new
    assert await pending_count(client, "closing") == 1


async def test_the_block_flushes_even_when_it_raises(client: AsyncClient) -> None:
    handles: list[AsyncPendingJob] = []

    async def produce() -> None:
        async with client.pipeline() as pipe:
            handles.extend(pipe.enqueue("t", n, queue="raising") for n in range(5))
            raise KeyError("the producer's own error")

    with pytest.raises(KeyError):
        await produce()
    assert len(handles) == 5
    assert all(handle.done() for handle in handles)
    assert await pending_count(client, "raising") == 5


async def test_a_deduplication_key_gives_every_handle_the_one_job(client: AsyncClient) -> None:
    async with client.pipeline() as pipe:
        # Two in the same call (the gateway collapses them onto the first) ...
        first = pipe.enqueue("t", {"v": 1}, queue="dedup", deduplication_key="once")
        second = pipe.enqueue("t", {"v": 2}, queue="dedup", deduplication_key="once")
        other = pipe.enqueue("t", {"v": 3}, queue="dedup", deduplication_key="another")
        await pipe.flush()
        # ... and one in a later call.
        third = pipe.enqueue("t", {"v": 4}, queue="dedup", deduplication_key="once")
    jobs = [await first, await second, await third]
    assert {job.id for job in jobs} == {jobs[0].id}
    assert (await other).id != jobs[0].id
    assert jobs[0].payload == {"v": 1}
    # The stored job keeps the first payload.
    assert (await client.get_job(jobs[0].id)).payload == {"v": 1}
    assert await pending_count(client, "dedup") == 2


async def test_enqueue_refuses_a_job_past_max_pending_until_there_is_room(
    client: AsyncClient,
) -> None:
    async with client.pipeline(max_pending=3) as pipe:
        assert pipe.max_pending == 3
        handles = [pipe.enqueue("t", n, queue="bounded") for n in range(3)]
        with pytest.raises(PipelineFullError, match="max_pending=3") as full:
            pipe.enqueue("t", 3, queue="bounded")
        assert full.value.code is StatusCode.RESOURCE_EXHAUSTED
        for n in range(3, 20):
            await pipe.wait_for_room()
            handles.append(pipe.enqueue("t", n, queue="bounded"))
            assert pipe.unanswered <= 3
    assert [(await handle).payload for handle in handles] == list(range(20))
    assert await pending_count(client, "bounded") == 20


@pytest.mark.parametrize("max_pending", [0, -1, 1.5, True])
async def test_a_bad_max_pending_is_refused(client: AsyncClient, max_pending: object) -> None:
    with pytest.raises(ValueError, match="max_pending must be a positive int"):
        client.pipeline(max_pending=max_pending)  # type: ignore[arg-type]


async def test_a_payload_the_serializer_cannot_encode_raises_in_enqueue(
    client: AsyncClient,
) -> None:
    async with client.pipeline() as pipe:
        with pytest.raises(InvalidArgumentError, match="serializer"):
            pipe.enqueue("t", object())
        assert pipe.unanswered == 0


async def test_a_gateway_that_is_not_there_fails_every_handle_and_the_flush(
    closed_address: str,
) -> None:
    async with AsyncClient(closed_address, retry=RetryConfig(max_attempts=1)) as unreachable:
        pipe = unreachable.pipeline()
        handles = [pipe.enqueue("t", n) for n in range(3)]
        with pytest.raises(EnqueueFailedError) as failed:
            await pipe.aclose()
        assert failed.value.failures == handles
        for handle in handles:
            with pytest.raises(GatewayUnavailableError):
                await handle


async def test_a_cancelled_sender_fails_its_jobs_rather_than_leaving_them_unanswered(
    client: AsyncClient,
) -> None:
    pipe = client.pipeline()
    handles = [pipe.enqueue("t", n) for n in range(3)]
    sender = pipe._sender
    assert sender is not None
    sender.cancel()  # before its first step, as when the loop closes
    with pytest.raises(EnqueueFailedError) as failed:
        await pipe.aclose()
    assert failed.value.failures == handles
    with pytest.raises(JobwireError, match="sender task was cancelled"):
        await handles[0]


async def test_a_pipeline_refuses_jobs_once_its_client_is_closed(gateway: Gateway) -> None:
    async with AsyncClient(gateway.address) as owner:
        pipe = owner.pipeline()
    with pytest.raises(RuntimeError, match="AsyncClient is closed"):
        pipe.enqueue("t")
