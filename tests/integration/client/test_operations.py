"""Operator methods of both clients against a real gateway, with real SDK workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from jobwire.client import (
    AsyncClient,
    Client,
    InvalidArgumentError,
    JobNotRetryableError,
    JobState,
    StatusCode,
    WorkerNotFoundError,
)
from jobwire.gateway import Gateway
from jobwire.worker import Backoff, HandlerRegistry, JobContext, Worker

from support import eventually


def failing_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    async def broken(ctx: JobContext) -> None:
        raise RuntimeError("bug 17")

    registry.register("broken", broken)
    return registry


async def dead_job(client: AsyncClient, gateway: Gateway) -> str:
    job = await client.enqueue("broken", {"n": 1}, max_retries=0)
    async with Worker(gateway.address, registry=failing_registry(), shutdown_timeout=5):
        await eventually(lambda: _state_is(client, job.id, JobState.DEAD))
    return job.id


async def _state_is(client: AsyncClient, job_id: str, state: JobState) -> bool:
    return (await client.get_job(job_id)).state is state


async def test_retry_job_replays_with_a_new_payload_and_keeps_errors(
    client: AsyncClient, gateway: Gateway
) -> None:
    job_id = await dead_job(client, gateway)
    replayed = await client.retry_job(job_id, payload={"n": 2}, max_retries=1)
    assert (replayed.state, replayed.attempt, replayed.max_retries) == (JobState.PENDING, 0, 1)
    again = await client.get_job(job_id)
    assert again.payload == {"n": 2}
    assert [e.message for e in again.errors] == ["bug 17"]
    assert again.errors[0].worker_id
    with pytest.raises(JobNotRetryableError, match="pending"):
        await client.retry_job(job_id)


async def test_retry_jobs_purge_and_pause_through_the_client(
    client: AsyncClient, gateway: Gateway
) -> None:
    job_id = await dead_job(client, gateway)
    since = datetime.now(UTC) - timedelta(hours=1)
    assert await client.retry_jobs(error_contains="bug", created_after=since) == 1
    assert await client.retry_jobs(queue="other") == 0
    assert (await client.get_job(job_id)).state is JobState.PENDING
    assert await client.purge_jobs(type="broken", dry_run=True) == 1
    assert await client.purge_jobs(type="broken") == 1
    with pytest.raises(InvalidArgumentError, match="selector"):
        await client.purge_jobs()
    paused = await client.pause_queue("default")
    assert paused.paused
    assert [s.paused for s in await client.stats("default")] == [True]
    assert not (await client.resume_queue("default")).paused


async def test_retry_and_purge_jobs_by_ids(client: AsyncClient) -> None:
    jobs = [await client.enqueue("t", {"n": n}) for n in range(4)]
    for job in jobs:
        await client.cancel_job(job.id)
    # Jobs or ids; no states with ids: every state the provider replays.
    assert await client.retry_jobs(ids=[jobs[0], jobs[2].id, "no-such-job"]) == 2
    states = [(await client.get_job(job.id)).state for job in jobs]
    assert states == [JobState.PENDING, JobState.CANCELLED, JobState.PENDING, JobState.CANCELLED]
    assert await client.retry_jobs(ids=[jobs[1]], states=[JobState.DEAD]) == 0
    assert await client.purge_jobs(ids=[jobs[0], jobs[1]], dry_run=True) == 2
    assert await client.purge_jobs(ids=[jobs[0], jobs[1]], queue="other") == 0
    assert await client.purge_jobs(ids=[jobs[0], jobs[1]]) == 2
    assert [job.id for job in await client.jobs()] == [jobs[3].id, jobs[2].id]
    with pytest.raises(InvalidArgumentError, match="not one string"):
        await client.purge_jobs(ids=jobs[3].id)
    with pytest.raises(InvalidArgumentError, match="at most 1000") as raised:
        await client.retry_jobs(ids=[f"j{n}" for n in range(1001)])
    assert raised.value.code is StatusCode.INVALID_ARGUMENT


async def test_priority_is_stored_and_checked(client: AsyncClient) -> None:
    low = await client.enqueue("t", priority=1)
    high = await client.enqueue("t", priority=9)
    assert (low.priority, high.priority) == (1, 9)
    with pytest.raises(InvalidArgumentError, match="priority"):
        await client.enqueue("t", priority=10)


async def test_a_drained_sdk_worker_finishes_and_stops_for_good(
    client: AsyncClient, gateway: Gateway
) -> None:
    registry = HandlerRegistry()
    registry.register("t", lambda ctx: None)
    worker = Worker(
        gateway.address,
        registry=registry,
        worker_id="to-drain",
        shutdown_timeout=5,
        reconnect=Backoff(maximum=timedelta(seconds=0.1)),
    )
    run = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: _listed(client, "to-drain"))
        [info] = await client.list_workers()
        assert info.sdk.startswith("jobwire-worker-python/")
        assert info.pid > 0
        assert info.host
        assert await client.drain_worker("to-drain") == 1
        await asyncio.wait_for(run, 10)  # run() returns: no reconnect
        assert await client.list_workers() == []
    finally:
        run.cancel()
    with pytest.raises(WorkerNotFoundError):
        await client.drain_worker("to-drain")


async def _listed(client: AsyncClient, worker_id: str) -> bool:
    return any(w.worker_id == worker_id for w in await client.list_workers())


def test_sync_client_operates_queues(sync_client: Client) -> None:
    job = sync_client.enqueue("t", priority=7)
    assert sync_client.get_job(job.id).priority == 7
    assert sync_client.pause_queue("default").paused
    assert sync_client.resume_queue("default").paused is False
    assert sync_client.purge_jobs(queue="default", dry_run=True) == 1
    assert sync_client.retry_jobs() == 0
    assert sync_client.retry_jobs(ids=[job]) == 0  # pending: not replayed
    assert sync_client.purge_jobs(ids=[job.id], dry_run=True) == 1
    assert sync_client.list_workers() == []
    with pytest.raises(JobNotRetryableError):
        sync_client.retry_job(job)
    with pytest.raises(WorkerNotFoundError):
        sync_client.drain_worker("nobody")
    urgent = sync_client.register_recurring("urgent", "t", schedule="every 1 hour", priority=8)
    assert urgent.priority == 8
    assert sync_client.trigger_schedule("urgent").priority == 8
