"""AsyncClient against a real gateway (memory provider)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from jobwire.client import (
    AsyncClient,
    InvalidArgumentError,
    JobNotFoundError,
    JobRequest,
    JobState,
    JobTerminalError,
    PayloadTooLargeError,
    StatusCode,
)
from jobwire.gateway import Gateway

from support import RawWorker

OpenWorker = Callable[..., Awaitable[RawWorker]]


async def test_enqueue_then_get_job(client: AsyncClient) -> None:
    job = await client.enqueue(
        "email:send",
        {"to": "ada@example.com"},
        queue="emails",
        max_retries=1,
        timeout=30,
        attributes={"tenant": "acme"},
    )
    assert job.state is JobState.PENDING
    assert job.payload == {"to": "ada@example.com"}
    stored = await client.get_job(job.id)
    assert stored.id == job.id
    assert stored.queue == "emails"
    assert stored.type == "email:send"
    assert stored.payload == {"to": "ada@example.com"}
    assert stored.content_type == "application/json"
    assert stored.max_retries == 1
    assert stored.timeout == timedelta(seconds=30)
    assert stored.attributes == {"tenant": "acme"}
    assert stored.create_time is not None
    assert stored.create_time.tzinfo is UTC


async def test_bytes_payload_round_trips(client: AsyncClient) -> None:
    job = await client.enqueue("blob", b"\x00\xff")
    stored = await client.get_job(job.id)
    assert stored.content_type == "application/octet-stream"
    assert stored.payload == b"\x00\xff"


async def test_delay_and_at_schedule_the_job(client: AsyncClient) -> None:
    before = datetime.now(UTC)
    delayed = await client.enqueue("t", delay=timedelta(minutes=5))
    assert delayed.state is JobState.SCHEDULED
    assert delayed.schedule_time is not None
    assert delayed.schedule_time >= before + timedelta(minutes=5) - timedelta(seconds=1)

    at = datetime.now(UTC) + timedelta(hours=1)
    scheduled = await client.enqueue("t", at=at)
    assert scheduled.state is JobState.SCHEDULED
    assert scheduled.schedule_time is not None
    assert abs(scheduled.schedule_time - at) < timedelta(milliseconds=1)


async def test_enqueue_many_keeps_order(client: AsyncClient) -> None:
    jobs = await client.enqueue_many(JobRequest("n", {"n": n}, queue="batch") for n in range(5))
    assert [job.payload for job in jobs] == [{"n": n} for n in range(5)]
    assert len({job.id for job in jobs}) == 5
    assert [(await client.get_job(job.id)).payload for job in jobs] == [{"n": n} for n in range(5)]
    assert await client.enqueue_many([]) == []


async def test_enqueue_many_rejects_the_batch_naming_the_entry(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.enqueue_many([JobRequest("ok"), JobRequest("")])
    assert caught.value.metadata["field"] == "requests[1].type"
    assert await client.stats() == []


async def test_list_jobs_paginates_newest_first(client: AsyncClient) -> None:
    jobs = await client.enqueue_many(JobRequest("page", n) for n in range(5))
    first = await client.list_jobs(type="page", page_size=2)
    assert len(first) == 2
    assert first.next_page_token is not None
    second = await client.list_jobs(type="page", page_size=2, page_token=first.next_page_token)
    assert len(second) == 2
    listed = [job.id async for job in client.iter_jobs(type="page", page_size=2)]
    assert listed == [job.id for job in reversed(jobs)]
    assert [job.id for job in first] + [job.id for job in second] == listed[:4]
    # Lists carry no payloads.
    assert first[0].payload is None


async def test_list_jobs_filters_by_state(client: AsyncClient) -> None:
    jobs = await client.enqueue_many(JobRequest("s") for _ in range(3))
    await client.cancel_job(jobs[0].id)
    cancelled = await client.list_jobs(state=JobState.CANCELLED)
    assert [job.id for job in cancelled] == [jobs[0].id]
    pending = await client.list_jobs(state=[JobState.PENDING, JobState.SCHEDULED])
    assert {job.id for job in pending} == {jobs[1].id, jobs[2].id}
    assert (await client.list_jobs(queue="other")).next_page_token is None


async def test_malformed_page_token(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.list_jobs(page_token="not-a-token")
    assert caught.value.reason == "INVALID_PAGE_TOKEN"
    assert caught.value.metadata["field"] == "page_token"


async def test_cancel_job(client: AsyncClient, raw_worker: OpenWorker) -> None:
    job = await client.enqueue("t")
    cancelled = await client.cancel_job(job.id, reason="changed my mind")
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.end_time is not None
    # A retried cancel returns the cancelled job.
    assert (await client.cancel_job(job.id)).state is JobState.CANCELLED
    done = await client.enqueue("t")
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id)
    await done.wait(timeout=5)
    with pytest.raises(JobTerminalError) as caught:
        await client.cancel_job(done.id)
    assert caught.value.code is StatusCode.FAILED_PRECONDITION


async def test_stats(client: AsyncClient) -> None:
    await client.enqueue_many([JobRequest("t", queue="a"), JobRequest("t", queue="a")])
    await client.enqueue("t", queue="b", delay=60)
    stats = {row.queue: row for row in await client.stats()}
    assert stats["a"].pending == 2
    assert stats["b"].scheduled == 1
    assert [row.queue for row in await client.stats("a")] == ["a"]


async def test_deduplication_returns_the_same_job(client: AsyncClient) -> None:
    first = await client.enqueue("t", {"v": 1}, deduplication_key="once")
    second = await client.enqueue("t", {"v": 2}, deduplication_key="once")
    assert second.id == first.id
    # The stored job keeps the first payload.
    assert (await client.get_job(first.id)).payload == {"v": 1}


async def test_unknown_job(client: AsyncClient) -> None:
    with pytest.raises(JobNotFoundError) as caught:
        await client.get_job("no-such-job")
    assert caught.value.code is StatusCode.NOT_FOUND
    assert caught.value.reason == "JOB_NOT_FOUND"
    assert "no-such-job" in str(caught.value)


async def test_empty_type_names_the_field(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.enqueue("")
    assert caught.value.metadata["field"] == "type"
    assert "type" in str(caught.value)


async def test_oversized_payload(client: AsyncClient) -> None:
    with pytest.raises(PayloadTooLargeError) as caught:
        await client.enqueue("t", b"x" * (1024 * 1024 + 1))
    assert caught.value.reason == "PAYLOAD_TOO_LARGE"
    assert isinstance(caught.value, InvalidArgumentError)


async def test_concurrent_enqueues_are_coalesced_and_each_gets_its_job(
    client: AsyncClient,
) -> None:
    jobs = await asyncio.gather(*(client.enqueue("c", {"n": n}) for n in range(100)))
    assert [job.payload for job in jobs] == [{"n": n} for n in range(100)]
    assert len({job.id for job in jobs}) == 100
    assert (await client.stats())[0].pending == 100


async def test_one_bad_caller_does_not_fail_the_coalesced_batch(client: AsyncClient) -> None:
    types = ["good"] * 4 + [""] + ["good"] * 5
    outcomes = await asyncio.gather(
        *(client.enqueue(type, n) for n, type in enumerate(types)), return_exceptions=True
    )
    bad = outcomes.pop(4)
    assert isinstance(bad, InvalidArgumentError)
    # Sent alone, the bad request's error names its own field, not a batch entry.
    assert bad.metadata["field"] == "type"
    assert all(not isinstance(outcome, BaseException) for outcome in outcomes)
    assert len({outcome.id for outcome in outcomes if not isinstance(outcome, BaseException)}) == 9


async def test_watch_job_follows_changes(client: AsyncClient) -> None:
    job = await client.enqueue("t")
    updates = client.watch_job(job)
    assert (await anext(updates)).state is JobState.PENDING
    await client.cancel_job(job.id)
    assert [update.state async for update in updates] == [JobState.CANCELLED]


async def test_watch_unknown_job(client: AsyncClient) -> None:
    with pytest.raises(JobNotFoundError):
        async for _ in client.watch_job("no-such-job"):
            pass


async def test_client_is_bound_to_its_first_loop(gateway: Gateway) -> None:
    client = AsyncClient(gateway.address)
    await client.enqueue("t")

    def other_loop() -> None:
        asyncio.run(client.get_job("x"))

    with pytest.raises(RuntimeError, match="one client per event loop"):
        await asyncio.to_thread(other_loop)
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.enqueue("t")
