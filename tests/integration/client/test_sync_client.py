"""The blocking Client against a real gateway running in a background thread."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from jobwire.client import (
    Client,
    InvalidArgumentError,
    JobNotFoundError,
    JobRequest,
    JobState,
    PayloadTooLargeError,
)


def test_enqueue_then_get_job(sync_client: Client) -> None:
    job = sync_client.enqueue("email:send", {"to": "ada@example.com"}, queue="emails")
    assert job.state is JobState.PENDING
    stored = sync_client.get_job(job.id)
    assert stored.id == job.id
    assert stored.queue == "emails"
    assert stored.payload == {"to": "ada@example.com"}


def test_at_schedules_the_job(sync_client: Client) -> None:
    at = datetime.now(UTC) + timedelta(hours=1)
    job = sync_client.enqueue("t", at=at)
    assert job.state is JobState.SCHEDULED
    assert job.schedule_time is not None
    assert abs(job.schedule_time - at) < timedelta(milliseconds=1)


def test_enqueue_many_keeps_order(sync_client: Client) -> None:
    jobs = sync_client.enqueue_many(JobRequest("n", n) for n in range(1500))
    assert [job.payload for job in jobs] == list(range(1500))
    assert len({job.id for job in jobs}) == 1500


def test_list_and_iterate_jobs(sync_client: Client) -> None:
    jobs = sync_client.enqueue_many(JobRequest("page", n) for n in range(5))
    sync_client.cancel_job(jobs[0].id)
    page = sync_client.list_jobs(page_size=2)
    assert len(page) == 2
    assert page.next_page_token is not None
    assert [job.id for job in sync_client.iter_jobs(page_size=2)] == [
        job.id for job in reversed(jobs)
    ]
    assert [job.id for job in sync_client.list_jobs(state=JobState.CANCELLED)] == [jobs[0].id]
    # A one-shot iterable of states filters every page alike.
    pending = sync_client.iter_jobs(state=(s for s in [JobState.PENDING]), page_size=2)
    assert [job.id for job in pending] == [job.id for job in reversed(jobs[1:])]


def test_cancel_and_stats(sync_client: Client) -> None:
    job = sync_client.enqueue("t", queue="q")
    assert sync_client.cancel_job(job.id).state is JobState.CANCELLED
    assert sync_client.cancel_job(job.id).state is JobState.CANCELLED  # retried cancel
    [stats] = sync_client.stats("q")
    assert stats.cancelled == 1
    assert stats.pending == 0


def test_deduplication(sync_client: Client) -> None:
    first = sync_client.enqueue("t", deduplication_key="k")
    assert sync_client.enqueue("t", deduplication_key="k").id == first.id


def test_errors(sync_client: Client) -> None:
    with pytest.raises(JobNotFoundError):
        sync_client.get_job("no-such-job")
    with pytest.raises(InvalidArgumentError) as caught:
        sync_client.enqueue("")
    assert caught.value.metadata["field"] == "type"
    with pytest.raises(PayloadTooLargeError):
        sync_client.enqueue("t", b"x" * (1024 * 1024 + 1))
    with pytest.raises(InvalidArgumentError, match="page_token"):
        sync_client.list_jobs(page_token="garbage")


def test_a_payload_the_serializer_cannot_encode_names_it(sync_client: Client) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        sync_client.enqueue("t", {"when": datetime(2026, 12, 24, tzinfo=UTC)})
    message = str(caught.value)
    assert message.startswith("payload: JsonSerializer cannot encode it (")
    assert "serializer=" in message
    assert caught.value.metadata["field"] == "payload"


def test_watch_job_until_cancelled(sync_client: Client) -> None:
    job = sync_client.enqueue("t")
    updates = sync_client.watch_job(job.id)
    assert next(updates).state is JobState.PENDING
    sync_client.cancel_job(job.id)
    assert [update.state for update in updates] == [JobState.CANCELLED]


def test_leaving_a_watch_early_ends_it(sync_client: Client) -> None:
    job = sync_client.enqueue("t")
    for update in sync_client.watch_job(job.id):
        assert update.state is JobState.PENDING
        break
    assert sync_client.get_job(job.id).state is JobState.PENDING


async def test_works_inside_a_running_event_loop(sync_client: Client) -> None:
    asyncio.get_running_loop()
    job = sync_client.enqueue("notebook", {"cell": 1})
    assert sync_client.get_job(job.id).payload == {"cell": 1}
    assert [stats.pending for stats in sync_client.stats()] == [1]
