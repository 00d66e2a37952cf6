"""wait(): results, dead and cancelled jobs, timeouts; a raw worker stream finishes the jobs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from jobwire.client import (
    AsyncClient,
    Client,
    JobCancelledError,
    JobDeadError,
    JobNotFoundError,
    JobState,
    WaitTimeoutError,
)
from jobwire.gateway import EmbeddedGateway

from support import RawWorker

OpenWorker = Callable[..., Awaitable[RawWorker]]


async def test_wait_returns_the_decoded_result(client: AsyncClient, raw_worker: OpenWorker) -> None:
    job = await client.enqueue("add", {"a": 1, "b": 2})
    waiting = asyncio.create_task(job.wait(timeout=5))
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    assert item.job.payload == b'{"a":1,"b":2}'
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await worker.ack(item.lease_id, result=b'{"sum":3}')
    assert await waiting == {"sum": 3}


async def test_wait_on_a_finished_job(client: AsyncClient, raw_worker: OpenWorker) -> None:
    job = await client.enqueue("t", b"raw")
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id, result=b"done")
    assert (await worker.result()).ok
    # Not JSON: the result comes back as bytes.
    assert await client.wait(job.id) == b"done"
    assert await client.wait(job.id, timeout=1) == b"done"


async def test_wait_for_a_dead_job(client: AsyncClient, raw_worker: OpenWorker) -> None:
    job = await client.enqueue("t", max_retries=0)
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.nack(item.lease_id, message="smtp down", retryable=False)
    with pytest.raises(JobDeadError) as caught:
        await job.wait(timeout=5)
    assert caught.value.last_error is not None
    assert caught.value.last_error.message == "smtp down"
    assert caught.value.job.state is JobState.DEAD
    assert "smtp down" in str(caught.value)


async def test_wait_for_a_cancelled_job(client: AsyncClient) -> None:
    job = await client.enqueue("t")
    waiting = asyncio.create_task(client.wait(job, timeout=5))
    await asyncio.sleep(0.05)
    await client.cancel_job(job.id)
    with pytest.raises(JobCancelledError):
        await waiting


async def test_wait_timeout(client: AsyncClient) -> None:
    job = await client.enqueue("t")
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        await job.wait(timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert isinstance(caught.value, TimeoutError)
    assert caught.value.job_id == job.id


async def test_wait_for_an_unknown_job(client: AsyncClient) -> None:
    with pytest.raises(JobNotFoundError):
        await client.wait("no-such-job", timeout=1)


async def test_sync_wait(embedded_gateway: EmbeddedGateway) -> None:
    with Client(embedded_gateway.address) as client:
        job = client.enqueue("add", [1, 2])
        # The sync wait blocks its thread; the worker acks from this test's loop.
        waiting = asyncio.create_task(asyncio.to_thread(job.wait, 5))
        async with grpc.aio.insecure_channel(embedded_gateway.address) as channel:
            worker = await RawWorker(channel).open()
            [item] = await worker.jobs(1)
            await worker.ack(item.lease_id, result=b"3")
            assert await waiting == 3
            worker.drop()

        cancelled = client.enqueue("t")
        client.cancel_job(cancelled.id)
        with pytest.raises(JobCancelledError):
            cancelled.wait()
        with pytest.raises(WaitTimeoutError):
            client.wait(client.enqueue("t"), timeout=0.1)


async def test_wait_all_returns_every_result_in_order(
    client: AsyncClient, raw_worker: OpenWorker
) -> None:
    jobs = [await client.enqueue("add", n) for n in range(5)]
    worker = await raw_worker(max_in_flight=8)
    items = await worker.jobs(5)
    for item in items[:2]:  # two finish before the wait begins
        await worker.ack(item.lease_id, result=str(int(item.job.payload) * 10).encode())
        assert (await worker.result()).ok
    waiting = asyncio.create_task(client.wait_all(jobs, timeout=10))
    for item in items[2:]:
        await worker.ack(item.lease_id, result=str(int(item.job.payload) * 10).encode())
    assert await waiting == [0, 10, 20, 30, 40]


async def test_wait_all_raises_for_a_dead_job_and_on_timeout(
    client: AsyncClient, raw_worker: OpenWorker
) -> None:
    done, dead = await client.enqueue("t"), await client.enqueue("t", max_retries=0)
    worker = await raw_worker(max_in_flight=8)
    by_id = {item.job.id: item for item in await worker.jobs(2)}
    await worker.ack(by_id[done.id].lease_id, result=b"1")
    await worker.nack(by_id[dead.id].lease_id, message="boom", retryable=False)
    with pytest.raises(JobDeadError):
        await client.wait_all([done, dead], timeout=5)
    pending = await client.enqueue("t", queue="nobody")
    with pytest.raises(WaitTimeoutError) as caught:
        await client.wait_all([done.id, pending], timeout=0.2)
    assert caught.value.job_id == pending.id


async def test_sync_wait_all(embedded_gateway: EmbeddedGateway) -> None:
    with Client(embedded_gateway.address) as client:
        jobs = [client.enqueue("add", n) for n in range(3)]
        waiting = asyncio.create_task(asyncio.to_thread(client.wait_all, jobs, timeout=10))
        async with grpc.aio.insecure_channel(embedded_gateway.address) as channel:
            worker = await RawWorker(channel, max_in_flight=8).open()
            for item in await worker.jobs(3):
                await worker.ack(item.lease_id, result=item.job.payload)
            assert await waiting == [0, 1, 2]
            worker.drop()
        with pytest.raises(JobNotFoundError):
            client.wait_all(["no-such-job"], timeout=1)
