"""DESIGN.md's semantics table, checked over the wire on every provider.

SQS counts delays, backoffs and visibility in whole seconds, so timings that
are fractions of a second on the memory provider are seconds there (``TICK``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import grpc
import pytest

from jobwire.v1 import job_pb2, queue_service_pb2

from backends import CONTRACT
from support import Producer, RawWorker, Request, Response, State, seconds
from timing import BACKOFF_TICK as TICK
from timing import EXTENSIBLE_LEASE, FRAME_TIMEOUT, QUIET

pytestmark = CONTRACT
OpenWorker = Callable[..., Awaitable[RawWorker]]
FAST_RETRY = {"retry": {"initial_backoff": TICK, "multiplier": 2, "jitter": 0}}
Revoked = Response.LeaseRevoked


async def test_ack_completes_job_with_result(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue(payload=b'{"n": 1}')
    assert job.state == State.STATE_PENDING
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    assert (item.job.id, item.job.payload, item.attempt) == (job.id, b'{"n": 1}', 1)
    await worker.ack(item.lease_id, result=b"42", content_type="application/json")
    assert (await worker.result()).ok
    done = await producer.get(job.id)
    assert (done.state, done.result, done.attempt) == (State.STATE_COMPLETED, b"42", 1)
    assert done.result_content_type == "application/json"
    assert done.end_time.seconds > 0


async def test_delayed_job_is_not_delivered_early(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker()
    job = await producer.enqueue(delay=seconds(0.4))
    assert job.state == State.STATE_SCHEDULED
    due = job.schedule_time.ToNanoseconds() / 1e9
    [item] = await worker.jobs(1)
    # Never early: checked on the delivery itself, whenever the enqueue's answer came.
    assert time.time() >= due
    assert item.job.id == job.id


async def test_schedule_time_in_the_past_runs_now(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    past = queue_service_pb2.EnqueueJobRequest(type="t").schedule_time
    past.FromSeconds(int(time.time()) - 60)
    job = await producer.enqueue(schedule_time=past)
    assert job.state == State.STATE_PENDING
    worker = await raw_worker()
    assert (await worker.jobs(1))[0].job.id == job.id


async def test_deduplication_key_returns_existing_job_until_it_finishes(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    request = queue_service_pb2.EnqueueJobRequest(type="t", deduplication_key="report-42")
    first = await producer.stub.EnqueueJob(request)
    second = await producer.stub.EnqueueJob(request)
    assert not first.deduplicated
    assert second.deduplicated
    assert second.job.id == first.job.id
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id)
    await producer.wait_state(first.job.id, State.STATE_COMPLETED)
    third = await producer.stub.EnqueueJob(request)
    assert not third.deduplicated
    assert third.job.id != first.job.id


async def test_request_id_makes_enqueue_idempotent(producer: Producer) -> None:
    request = queue_service_pb2.EnqueueJobRequest(type="t", request_id="req-1")
    first = await producer.stub.EnqueueJob(request)
    retry = await producer.stub.EnqueueJob(request)
    assert retry.job.id == first.job.id
    assert retry.deduplicated


@pytest.mark.gateway(provider=FAST_RETRY)
async def test_failures_retry_with_growing_backoff_then_die(
    producer: Producer, raw_worker: OpenWorker, provider_kind: str
) -> None:
    tick = TICK.of(provider_kind)
    job = await producer.enqueue(max_retries=3)
    # Every change in order: a retry may be redelivered before a GetJob could
    # see the job FAILED on a busy machine, but the stream still shows it.
    failures: asyncio.Queue[job_pb2.Job] = asyncio.Queue()

    async def follow() -> job_pb2.Job:
        request = queue_service_pb2.WatchJobRequest(id=job.id, view=job_pb2.JOB_VIEW_FULL)
        seen = 0  # a failed attempt may be reported more than once (SQS reads it back)
        async for update in producer.stub.WatchJob(request):
            if update.job.state == State.STATE_FAILED and update.job.last_error.attempt > seen:
                seen = update.job.last_error.attempt
                failures.put_nowait(update.job)
            elif update.job.state == State.STATE_DEAD:
                return update.job
        raise AssertionError("the watch ended before the job was dead")

    watching = asyncio.create_task(follow())
    worker = await raw_worker()
    delivered_at: list[float] = []
    backoffs: list[float] = []
    for attempt in range(1, 5):
        [item] = await worker.jobs(1, timeout=5 + 8 * tick)
        delivered_at.append(time.monotonic())
        assert item.attempt == attempt
        await worker.nack(item.lease_id, message=f"failure {attempt}")
        assert (await worker.result()).ok
        if attempt < 4:
            failed = await asyncio.wait_for(failures.get(), FRAME_TIMEOUT)
            assert failed.last_error.message == f"failure {attempt}"
            retry_at = failed.schedule_time.ToNanoseconds() / 1e9
            backoffs.append(retry_at - failed.last_error.time.ToNanoseconds() / 1e9)
    dead = await asyncio.wait_for(watching, FRAME_TIMEOUT)
    assert dead.attempt == 4
    assert dead.last_error.message == "failure 4"
    assert dead.last_error.attempt == 4
    gaps = [b - a for a, b in itertools.pairwise(delivered_at)]
    # 1, 2, 4 ticks without jitter: no retry comes before its backoff. (That they
    # grow is checked on the scheduled times: wall-clock gaps also hold load.)
    assert gaps[0] >= tick
    assert gaps[1] >= 2 * tick
    assert gaps[2] >= 4 * tick
    assert backoffs == pytest.approx([tick, 2 * tick, 4 * tick], abs=0.01)


async def test_non_retryable_failure_is_dead_at_once(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue(max_retries=5)
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.nack(item.lease_id, message="bad input", retryable=False)
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert dead.attempt == 1
    assert not dead.last_error.retryable


async def test_retry_delay_from_the_worker_is_honoured(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue()
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.nack(item.lease_id, retry_delay=seconds(1))
    assert (await worker.result()).ok
    failed = await producer.get(job.id)
    assert failed.state == State.STATE_FAILED  # a second's margin for one GetJob
    retry_at = failed.schedule_time.ToNanoseconds() / 1e9
    assert retry_at - failed.last_error.time.ToNanoseconds() / 1e9 == pytest.approx(1, abs=0.01)
    [again] = await worker.jobs(1)
    assert time.time() >= retry_at  # never before the delay the worker asked for
    assert again.attempt == 2


@pytest.mark.gateway(provider=FAST_RETRY)
async def test_timeout_revokes_the_lease_and_counts_a_failed_attempt(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue(timeout=seconds(0.2), max_retries=1)
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    revoked = (await worker.expect("lease_revoked")).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (item.lease_id, Revoked.REASON_TIMED_OUT)
    # The late ack is fenced and the stream keeps working.
    await worker.ack(item.lease_id)
    late = await worker.result()
    assert (late.ok, late.reason) == (False, "LEASE_EXPIRED")
    [retry] = await worker.jobs(1)
    assert retry.attempt == 2
    await worker.expect("lease_revoked")
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert dead.last_error.type == "TIMEOUT"


@pytest.mark.gateway(server={"lease_duration": 1, "min_lease_duration": 0.1})
async def test_expired_lease_goes_to_another_worker_and_late_ack_is_fenced(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue()
    slow = await raw_worker(worker_id="slow", lease_duration=seconds(0.3))
    [item] = await slow.jobs(1)
    revoked = (await slow.expect("lease_revoked")).lease_revoked
    assert revoked.reason == Revoked.REASON_EXPIRED
    # The silent worker keeps no credit for new work; another one gets the job.
    fast = await raw_worker(worker_id="fast")
    [again] = await fast.jobs(1)
    assert (again.job.id, again.attempt) == (job.id, 2)
    await slow.nothing("delivery", within=QUIET)
    await slow.ack(item.lease_id)
    late = await slow.result()
    assert (late.ok, late.reason) == (False, "LEASE_EXPIRED")
    # Answering for the expired lease gives the credit back.
    newer = await producer.enqueue()
    assert (await slow.jobs(1))[0].job.id == newer.id
    await fast.ack(again.lease_id)
    assert (await fast.result()).ok
    assert (await producer.get(job.id)).state == State.STATE_COMPLETED


@pytest.mark.gateway(server={"min_lease_duration": 0.1})
async def test_extending_the_lease_keeps_the_job(
    producer: Producer, raw_worker: OpenWorker, provider_kind: str
) -> None:
    lease = EXTENSIBLE_LEASE.of(provider_kind)
    job = await producer.enqueue()
    worker = await raw_worker(lease_duration=seconds(lease))
    [item] = await worker.jobs(1)
    # Each extension asks for four first leases from now; two of them keep the
    # job for well past where the first lease ended.
    extend = Request.ExtendLease(lease_ids=[item.lease_id], lease_duration=seconds(4 * lease))
    for _ in range(2):
        await worker.send(Request(extend_lease=extend))
        extended = (await worker.expect("lease_extended")).lease_extended.items[0]
        assert extended.lease_id == item.lease_id
        assert extended.lease_expire_time.ToNanoseconds() > item.lease_expire_time.ToNanoseconds()
        await worker.nothing("lease_revoked", within=0.75 * lease)
    await worker.ack(item.lease_id)
    assert (await worker.result()).ok
    assert (await producer.get(job.id)).attempt == 1


async def test_cancel_pending_job(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue(delay=seconds(60))
    cancelled = await producer.stub.CancelJob(
        queue_service_pb2.CancelJobRequest(id=job.id, reason="not needed")
    )
    assert cancelled.job.state == State.STATE_CANCELLED
    assert cancelled.job.last_error.message == "not needed"
    other = await producer.enqueue()
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    assert item.job.id == other.id
    # Cancelling again (a retried request) returns the cancelled job.
    again = await producer.stub.CancelJob(queue_service_pb2.CancelJobRequest(id=job.id))
    assert again.job.state == State.STATE_CANCELLED


async def test_cancel_processing_job_revokes_its_lease(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue()
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await producer.stub.CancelJob(queue_service_pb2.CancelJobRequest(id=job.id))
    revoked = (await worker.expect("lease_revoked")).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (item.lease_id, Revoked.REASON_CANCELLED)
    await worker.ack(item.lease_id)
    late = await worker.result()
    assert (late.ok, late.reason) == (False, "LEASE_REVOKED")
    assert (await producer.get(job.id)).state == State.STATE_CANCELLED


async def test_dropped_stream_requeues_at_once_with_attempt_counted(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue()
    crashed = await raw_worker(worker_id="crashed")
    await crashed.jobs(1)
    survivor = await raw_worker(worker_id="survivor")
    crashed.drop()
    [item] = await survivor.jobs(1, timeout=2)
    assert (item.job.id, item.attempt) == (job.id, 2)
    assert item.job.last_error.type == "WORKER_LOST"


async def test_crash_loop_ends_dead(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue(max_retries=1)
    for _ in range(2):
        worker = await raw_worker()
        await worker.jobs(1)
        worker.drop()
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert dead.attempt == 2


async def test_credits_bound_deliveries_and_flow_grants_more(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    for _ in range(10):
        await producer.enqueue()
    worker = await raw_worker(max_in_flight=3)
    first = await worker.jobs(3)
    await worker.nothing("delivery", within=QUIET)
    await worker.ack(first[0].lease_id)
    assert len(await worker.jobs(1)) == 1
    await worker.nothing("delivery", within=0.1)
    await worker.send(Request(flow=Request.Flow(credits=2)))
    assert len(await worker.jobs(2)) == 2
    await worker.nothing("delivery", within=0.1)


async def test_queues_and_job_types_route_jobs(producer: Producer, raw_worker: OpenWorker) -> None:
    email = await producer.enqueue(type="email:send", queue="mail")
    await producer.enqueue(type="report:build", queue="mail")
    await producer.enqueue(type="email:send")  # default queue
    worker = await raw_worker(queues=["mail"], job_types=["email:send"], max_in_flight=5)
    [item] = await worker.jobs(1)
    assert item.job.id == email.id
    await worker.nothing("delivery", within=QUIET)


async def test_delivery_is_instant_for_a_waiting_worker(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker()
    await worker.nothing("delivery", within=0.05)
    job = await producer.enqueue()
    [item] = await worker.jobs(1, timeout=1)
    assert item.job.id == job.id


async def test_enqueue_answers_the_job_as_stored_while_its_delivery_goes_first(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    # With a worker waiting, the gateway writes the delivery before the answer;
    # the answer still shows the job as enqueued, not as leased since.
    worker = await raw_worker()
    job = await producer.enqueue()
    assert (job.state, job.attempt, job.worker_id) == (State.STATE_PENDING, 0, "")
    [item] = await worker.jobs(1, timeout=1)
    assert (item.job.id, item.attempt) == (job.id, 1)


@pytest.mark.providers(
    "memory", "redis", reason="SQS keeps finished jobs for provider.history_retention, not a count"
)
@pytest.mark.gateway(provider={"max_history": 2})
async def test_history_is_bounded_but_unfinished_jobs_are_kept(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    waiting = await producer.enqueue(type="later", delay=seconds(60))
    worker = await raw_worker(job_types=["now"], max_in_flight=10)
    finished = [await producer.enqueue(type="now") for _ in range(4)]
    items = await worker.jobs(4)
    await worker.ack(*(i.lease_id for i in items))
    await producer.wait_state(finished[-1].id, State.STATE_COMPLETED)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await producer.get(finished[0].id)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert (await producer.get(finished[-1].id)).state == State.STATE_COMPLETED
    assert (await producer.get(waiting.id)).state == State.STATE_SCHEDULED


async def test_progress_is_recorded_and_watched(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue()
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    progress = Request.Progress(lease_id=item.lease_id)
    progress.progress.current, progress.progress.total = 3, 10
    await worker.send(Request(progress=progress))
    request = queue_service_pb2.WatchJobRequest(id=job.id)
    states = []
    async for update in producer.stub.WatchJob(request):
        states.append(update.job.state)
        if update.job.progress.current == 3:
            assert update.job.progress.total == 10
            await worker.ack(item.lease_id)
    assert states[0] == State.STATE_PROCESSING
    assert states[-1] == State.STATE_COMPLETED


async def test_worker_drain_stops_deliveries_but_takes_answers(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    first = await producer.enqueue()
    worker = await raw_worker(max_in_flight=1)
    [item] = await worker.jobs(1)
    await worker.send(Request(drain=Request.Drain()))
    second = await producer.enqueue()
    await worker.ack(item.lease_id)
    assert (await worker.result()).ok
    await worker.nothing("delivery", within=QUIET)
    assert (await producer.get(first.id)).state == State.STATE_COMPLETED
    assert (await producer.get(second.id)).attempt == 0
