"""Jobs the scheduler holds are jobs like any other: listed, counted, deduplicated.

A job due beyond the delay threshold waits in the scheduler's database, not in
the provider; every provider that sends long delays there runs these tests.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from jobwire.v1 import queue_service_pb2

from backends import CONTRACT
from support import Producer, RawWorker, State, seconds

pytestmark = CONTRACT
OpenWorker = Callable[..., Awaitable[RawWorker]]
Q = queue_service_pb2
LATER = 3600  # seconds: beyond every provider's delay threshold


async def list_all(producer: Producer, **fields: object) -> list[str]:
    """Every job id of a listing, page by page (pages of one job)."""
    ids: list[str] = []
    token = ""
    for _ in range(100):
        page = await producer.stub.ListJobs(
            Q.ListJobsRequest(page_size=1, page_token=token, **fields)  # type: ignore[arg-type]
        )
        ids.extend(job.id for job in page.jobs)
        token = page.next_page_token
        if not token:
            return ids
    raise AssertionError("the listing did not end")


async def test_held_jobs_are_listed_newest_first_among_the_others(producer: Producer) -> None:
    order = []
    for i in range(4):
        job = await producer.enqueue(delay=seconds(LATER)) if i % 2 else await producer.enqueue()
        order.append(job.id)
    assert await list_all(producer) == order[::-1]
    scheduled = await producer.stub.ListJobs(Q.ListJobsRequest(states=[State.STATE_SCHEDULED]))
    assert [job.id for job in scheduled.jobs] == [order[3], order[1]]
    assert all(job.state == State.STATE_SCHEDULED for job in scheduled.jobs)
    pending = await list_all(producer, states=[State.STATE_PENDING])
    assert pending == [order[2], order[0]]


async def test_held_jobs_are_counted(producer: Producer) -> None:
    await producer.enqueue(delay=seconds(LATER))
    held = await producer.enqueue(delay=seconds(LATER))
    await producer.enqueue()
    await producer.stub.CancelJob(Q.CancelJobRequest(id=held.id))
    [stats] = (await producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))).queues
    assert (stats.pending, stats.scheduled, stats.cancelled) == (1, 1, 1)


async def test_a_key_held_for_later_holds_for_now_too(producer: Producer) -> None:
    later = Q.EnqueueJobRequest(type="t", deduplication_key="report", delay=seconds(LATER))
    held = await producer.stub.EnqueueJob(later)
    now = await producer.stub.EnqueueJob(Q.EnqueueJobRequest(type="t", deduplication_key="report"))
    assert (now.deduplicated, now.job.id) == (True, held.job.id)


async def test_a_key_held_now_holds_for_later_too(producer: Producer) -> None:
    now = await producer.stub.EnqueueJob(Q.EnqueueJobRequest(type="t", deduplication_key="sync"))
    later = Q.EnqueueJobRequest(type="t", deduplication_key="sync", delay=seconds(LATER))
    held = await producer.stub.EnqueueJob(later)
    assert (held.deduplicated, held.job.id) == (True, now.job.id)
    batch = Q.EnqueueJobsRequest(
        requests=[
            Q.EnqueueJobRequest(type="t", deduplication_key="nightly"),
            Q.EnqueueJobRequest(type="t", deduplication_key="nightly", delay=seconds(LATER)),
        ]
    )
    first, second = (await producer.stub.EnqueueJobs(batch)).results
    assert (second.deduplicated, second.job.id) == (True, first.job.id)


async def test_stats_name_the_pending_types_no_worker_takes(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    await producer.enqueue(type="thumbnail")
    [stats] = (await producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))).queues
    assert list(stats.unserved_types) == ["thumbnail"]
    await raw_worker(job_types=["email:send"])
    await producer.enqueue(type="email:send", delay=seconds(LATER))
    [stats] = (await producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))).queues
    assert list(stats.unserved_types) == ["thumbnail"]
    await raw_worker(job_types=["thumbnail"], max_in_flight=1)
    [stats] = (await producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="default"))).queues
    assert list(stats.unserved_types) == []


async def test_held_jobs_are_purged_by_their_selector(producer: Producer) -> None:
    held = await producer.enqueue(queue="mail", delay=seconds(LATER))
    other = await producer.enqueue(queue="mail", delay=seconds(LATER))
    dropped = await producer.enqueue(queue="mail", delay=seconds(LATER))
    await producer.stub.CancelJob(Q.CancelJobRequest(id=dropped.id, reason="not needed"))
    now = await producer.enqueue(queue="mail")
    named = Q.JobSelector(ids=[held.id, now.id])
    preview = Q.PurgeJobsRequest(selector=named, validate_only=True)
    assert (await producer.stub.PurgeJobs(preview)).count == 2
    assert (await producer.stub.PurgeJobs(Q.PurgeJobsRequest(selector=named))).count == 2
    assert await list_all(producer, queue="mail") == [dropped.id, other.id]
    by_error = Q.JobSelector(queue="mail", error_contains="not needed")
    assert (await producer.stub.PurgeJobs(Q.PurgeJobsRequest(selector=by_error))).count == 1
    scheduled = Q.JobSelector(queue="mail", states=[State.STATE_SCHEDULED])
    assert (await producer.stub.PurgeJobs(Q.PurgeJobsRequest(selector=scheduled))).count == 1
    assert await list_all(producer, queue="mail") == []
    [stats] = (await producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))).queues
    assert (stats.scheduled, stats.cancelled) == (0, 0)
