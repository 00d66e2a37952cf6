"""Operating queues over the wire, on every provider: replay, purge, pause, workers, priorities."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest

from jobwire.v1 import job_pb2, queue_service_pb2, worker_service_pb2, worker_service_pb2_grpc

from backends import CONTRACT
from support import Producer, RawWorker, Request, Response, State, eventually, seconds
from timing import FRAME_TIMEOUT, QUIET, PerProvider

pytestmark = CONTRACT
OpenWorker = Callable[..., Awaitable[RawWorker]]
Selector = queue_service_pb2.JobSelector
#: Dead jobs replayed by one RetryJobs call. SQS (moto, one HTTP call per
#: receive and delete of ten messages) makes them far slower to kill first.
# SQS: moto is slow. RabbitMQ: the purged jobs' messages stay in the broker's
# queue until delivered, and the late worker (one credit) drains them one
# round trip each before its own job.
BULK = {"sqs": 300, "rabbitmq": 1000}


async def kill(
    producer: Producer, worker: RawWorker, count: int, queue: str = "", type: str = "t"
) -> list[str]:
    """Enqueue ``count`` jobs without retries and fail each once: all dead."""
    ids: list[str] = []
    for start in range(0, count, 1000):
        batch = [
            queue_service_pb2.EnqueueJobRequest(
                type=type, queue=queue, payload=b"{}", max_retries=0
            )
            for _ in range(min(1000, count - start))
        ]
        response = await producer.stub.EnqueueJobs(
            queue_service_pb2.EnqueueJobsRequest(requests=batch)
        )
        ids += [result.job.id for result in response.results]
    done = 0
    while done < count:
        items = await worker.jobs(1, timeout=60)
        failure = job_pb2.JobFailure(message="bug 17", type="RuntimeError")
        nacks = [Request.Nack.Item(lease_id=i.lease_id, failure=failure) for i in items]
        await worker.send(Request(nack=Request.Nack(items=nacks)))
        await worker.expect("ack_result", timeout=60)
        done += len(items)
    return ids


async def stats(producer: Producer, queue: str) -> queue_service_pb2.QueueStats:
    [row] = (
        await producer.stub.GetQueueStats(queue_service_pb2.GetQueueStatsRequest(queue=queue))
    ).queues
    return row


async def code_of(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value.code(), raised.value.details() or ""


# Replay ----------------------------------------------------------------------


async def test_replayed_dead_job_runs_again_and_keeps_its_errors(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker()
    [job_id] = await kill(producer, worker, 1)
    dead = await producer.wait_state(job_id, State.STATE_DEAD)
    assert [e.message for e in dead.errors] == ["bug 17"]
    assert dead.errors[0].worker_id == "raw-worker"
    replayed = (
        await producer.stub.RetryJob(
            queue_service_pb2.RetryJobRequest(id=job_id, payload=b'{"fixed": 1}', max_retries=2)
        )
    ).job
    assert (replayed.id, replayed.state, replayed.attempt) == (job_id, State.STATE_PENDING, 0)
    assert replayed.max_retries == 2
    [item] = await worker.jobs(1)
    assert (item.job.id, item.job.payload, item.attempt) == (job_id, b'{"fixed": 1}', 1)
    await worker.ack(item.lease_id)
    done = await producer.wait_state(job_id, State.STATE_COMPLETED)
    assert [e.message for e in done.errors] == ["bug 17"]


async def test_retry_job_refuses_jobs_that_are_not_dead_failed_or_cancelled(
    producer: Producer,
) -> None:
    job = await producer.enqueue()
    code, details = await code_of(
        producer.stub.RetryJob(queue_service_pb2.RetryJobRequest(id=job.id))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "pending" in details
    code, _ = await code_of(producer.stub.RetryJob(queue_service_pb2.RetryJobRequest(id="nope")))
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.gateway(provider=PerProvider.of_each({"max_history": 20_000}, sqs={}, rabbitmq={}))
async def test_retry_jobs_replays_a_filtered_set_in_one_call_once_per_request_id(
    producer: Producer, raw_worker: OpenWorker, provider_kind: str
) -> None:
    count = BULK.get(provider_kind, 10_000)
    worker = await raw_worker(max_in_flight=1000, queues=["mail", "other"], job_types=["t"])
    await kill(producer, worker, count, queue="mail")
    [other] = await kill(producer, worker, 1, queue="other")
    await worker.close()  # the gateway has forgotten the stream before jobs are replayed
    await eventually(lambda: _count(producer, "mail", "dead", count))
    request = queue_service_pb2.RetryJobsRequest(selector=Selector(queue="mail"), request_id="r-1")
    assert (await producer.stub.RetryJobs(request)).count == count
    assert (await producer.get(other)).state == State.STATE_DEAD
    replayed = await stats(producer, "mail")
    assert (replayed.dead, replayed.pending) == (0, count)
    # The same request again replays nothing more, even with a dead job to replay.
    pending = Selector(queue="mail", states=[State.STATE_PENDING])
    purge = queue_service_pb2.PurgeJobsRequest(selector=pending)
    assert (await producer.stub.PurgeJobs(purge)).count == count
    late_worker = await raw_worker(worker_id="late", queues=["mail"], job_types=["late"])
    [late] = await kill(producer, late_worker, 1, queue="mail", type="late")
    await producer.wait_state(late, State.STATE_DEAD)
    assert (await producer.stub.RetryJobs(request)).count == count
    assert (await producer.get(late)).state == State.STATE_DEAD


async def _count(producer: Producer, queue: str, state: str, expected: int) -> bool:
    return bool(getattr(await stats(producer, queue), state) == expected)


async def test_retry_jobs_selects_by_error_and_type(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(max_in_flight=10)
    [a] = await kill(producer, worker, 1, type="a")
    [b] = await kill(producer, worker, 1, type="b")
    await producer.wait_state(b, State.STATE_DEAD)
    await worker.close()  # the gateway has forgotten the stream before jobs are replayed
    miss = queue_service_pb2.RetryJobsRequest(selector=Selector(error_contains="other bug"))
    assert (await producer.stub.RetryJobs(miss)).count == 0
    hit = queue_service_pb2.RetryJobsRequest(selector=Selector(type="a", error_contains="bug 1"))
    assert (await producer.stub.RetryJobs(hit)).count == 1
    assert (await producer.get(a)).state == State.STATE_PENDING
    assert (await producer.get(b)).state == State.STATE_DEAD


async def test_retry_jobs_with_ids_replays_exactly_those_jobs(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(max_in_flight=10)
    dead = await kill(producer, worker, 4)
    for job_id in dead:
        await producer.wait_state(job_id, State.STATE_DEAD)
    await worker.close()  # the gateway has forgotten the stream before jobs are replayed
    cancelled = await producer.enqueue(queue="other")
    await producer.stub.CancelJob(queue_service_pb2.CancelJobRequest(id=cancelled.id))
    pending = await producer.enqueue(queue="other")
    # No states with ids: every named job this provider can replay (dead and
    # cancelled everywhere); the pending one is left alone, an unknown id matches nothing.
    named = [dead[0], dead[2], cancelled.id, pending.id, "no-such-job"]
    retry = queue_service_pb2.RetryJobsRequest(selector=Selector(ids=named))
    assert (await producer.stub.RetryJobs(retry)).count == 3
    states = [(await producer.get(job_id)).state for job_id in [*dead, cancelled.id, pending.id]]
    assert states == [
        State.STATE_PENDING,
        State.STATE_DEAD,
        State.STATE_PENDING,
        State.STATE_DEAD,
        State.STATE_PENDING,
        State.STATE_PENDING,
    ]
    # The other fields hold too (AND): the dead ones named, but of another type.
    other_type = Selector(ids=[dead[1], dead[3]], type="other")
    both = queue_service_pb2.RetryJobsRequest(selector=other_type)
    assert (await producer.stub.RetryJobs(both)).count == 0
    dead_only = Selector(ids=[dead[1], dead[3]], states=[State.STATE_DEAD])
    explicit = queue_service_pb2.RetryJobsRequest(selector=dead_only)
    assert (await producer.stub.RetryJobs(explicit)).count == 2


async def test_selector_ids_are_full_ids_at_most_1000(producer: Producer) -> None:
    job = await producer.enqueue()
    too_many = Selector(ids=[f"id-{n}" for n in range(1001)])
    for call in (
        producer.stub.RetryJobs(queue_service_pb2.RetryJobsRequest(selector=too_many)),
        producer.stub.PurgeJobs(queue_service_pb2.PurgeJobsRequest(selector=too_many)),
    ):
        code, details = await code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("selector.ids:")
        assert "1001" in details
        assert "at most 1000" in details
    code, details = await code_of(
        producer.stub.PurgeJobs(queue_service_pb2.PurgeJobsRequest(selector=Selector(ids=[""])))
    )
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "selector.ids[0]")
    # A prefix names no job here (GetJob resolves prefixes; selectors do not).
    prefix = Selector(ids=[job.id[:12]])
    preview = queue_service_pb2.PurgeJobsRequest(selector=prefix, validate_only=True)
    assert (await producer.stub.PurgeJobs(preview)).count == 0
    exactly = queue_service_pb2.PurgeJobsRequest(
        selector=Selector(ids=[f"id-{n}" for n in range(999)] + [job.id]), validate_only=True
    )
    assert (await producer.stub.PurgeJobs(exactly)).count == 1


# Purge -----------------------------------------------------------------------


async def test_purge_with_ids_deletes_exactly_those_jobs(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    jobs = [(await producer.enqueue(queue="mail")).id for _ in range(4)]
    worker = await raw_worker(queues=["other"])
    running = await producer.enqueue(queue="other")
    [item] = await worker.jobs(1)
    named = Selector(ids=[jobs[0], jobs[2], running.id])
    purge = queue_service_pb2.PurgeJobsRequest
    # No `all` needed: the ids are a selection. The processing one is spared.
    assert (await producer.stub.PurgeJobs(purge(selector=named, validate_only=True))).count == 2
    assert (await producer.stub.PurgeJobs(purge(selector=named))).count == 2
    for job_id in (jobs[0], jobs[2]):
        code, _ = await code_of(producer.stub.GetJob(queue_service_pb2.GetJobRequest(id=job_id)))
        assert code == grpc.StatusCode.NOT_FOUND
    for job_id in (jobs[1], jobs[3]):
        assert (await producer.get(job_id)).state == State.STATE_PENDING
    assert (await producer.get(running.id)).state == State.STATE_PROCESSING
    elsewhere = Selector(ids=[jobs[1]], queue="default")
    assert (await producer.stub.PurgeJobs(purge(selector=elsewhere))).count == 0
    with_processing = purge(selector=named, include_processing=True)
    assert (await producer.stub.PurgeJobs(with_processing)).count == 1
    assert (await worker.expect("lease_revoked")).lease_revoked.lease_id == item.lease_id


async def test_purge_preview_equals_purge_count(producer: Producer) -> None:
    for _ in range(5):
        await producer.enqueue(queue="mail")
    keep = await producer.enqueue(queue="other")
    request = queue_service_pb2.PurgeJobsRequest(selector=Selector(queue="mail"))
    preview = queue_service_pb2.PurgeJobsRequest(
        selector=Selector(queue="mail"), validate_only=True
    )
    assert (await producer.stub.PurgeJobs(preview)).count == 5
    assert (await stats(producer, "mail")).pending == 5
    assert (await producer.stub.PurgeJobs(request)).count == 5
    assert (await stats(producer, "mail")).pending == 0
    assert (await producer.get(keep.id)).state == State.STATE_PENDING


async def test_purge_spares_processing_jobs_unless_asked_then_revokes_them(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue(queue="mail")
    worker = await raw_worker(queues=["mail"])
    [item] = await worker.jobs(1)
    selector = Selector(queue="mail")
    purge = queue_service_pb2.PurgeJobsRequest
    assert (await producer.stub.PurgeJobs(purge(selector=selector))).count == 0
    assert (
        await producer.stub.PurgeJobs(purge(selector=selector, include_processing=True))
    ).count == 1
    revoked = (await worker.expect("lease_revoked")).lease_revoked
    assert revoked.lease_id == item.lease_id
    code, _ = await code_of(producer.stub.GetJob(queue_service_pb2.GetJobRequest(id=job.id)))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_purge_refuses_an_empty_selector_without_all(producer: Producer) -> None:
    code, details = await code_of(producer.stub.PurgeJobs(queue_service_pb2.PurgeJobsRequest()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "selector" in details
    await producer.enqueue()
    everything = queue_service_pb2.PurgeJobsRequest(all=True, validate_only=True)
    assert (await producer.stub.PurgeJobs(everything)).count == 1


# Pause -----------------------------------------------------------------------


async def test_paused_queue_accepts_but_delivers_nothing_while_a_sibling_flows(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(queues=["mail", "other"], max_in_flight=10)
    paused = await producer.stub.PauseQueue(queue_service_pb2.PauseQueueRequest(queue="mail"))
    assert paused.stats.paused
    held = await producer.enqueue(queue="mail")
    flows = await producer.enqueue(queue="other")
    [item] = await worker.jobs(1)
    assert item.job.id == flows.id
    await worker.nothing("delivery", within=QUIET)
    assert (await stats(producer, "mail")).paused
    assert not (await stats(producer, "other")).paused
    resumed = await producer.stub.ResumeQueue(queue_service_pb2.ResumeQueueRequest(queue="mail"))
    assert not resumed.stats.paused
    [item] = await worker.jobs(1)
    assert item.job.id == held.id


async def test_pause_lets_delivered_jobs_finish(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue(queue="mail")
    worker = await raw_worker(queues=["mail"])
    [item] = await worker.jobs(1)
    await producer.stub.PauseQueue(queue_service_pb2.PauseQueueRequest(queue="mail"))
    await worker.ack(item.lease_id)
    assert (await worker.result()).ok
    assert (await producer.wait_state(job.id, State.STATE_COMPLETED)).attempt == 1


async def test_pause_refuses_a_bad_queue_name(producer: Producer) -> None:
    for queue in ("", "no spaces"):
        code, details = await code_of(
            producer.stub.PauseQueue(queue_service_pb2.PauseQueueRequest(queue=queue))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details.startswith("queue:")


# Workers ---------------------------------------------------------------------


async def test_list_workers_shows_what_workers_sent_in_open(
    producer: Producer, raw_worker: OpenWorker, channel: grpc.aio.Channel
) -> None:
    await raw_worker(
        worker_id="w-1", host="box-1", pid=4242, sdk="test/1", queues=["mail"], max_in_flight=3
    )
    await raw_worker(worker_id="w-2", queues=["other"])
    stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
    listed = (await stub.ListWorkers(worker_service_pb2.ListWorkersRequest())).workers
    assert sorted(w.worker_id for w in listed) == ["w-1", "w-2"]
    [w1] = (await stub.ListWorkers(worker_service_pb2.ListWorkersRequest(queue="mail"))).workers
    assert (w1.worker_id, w1.host, w1.pid, w1.sdk, w1.credits) == (
        "w-1",
        "box-1",
        4242,
        "test/1",
        3,
    )
    assert list(w1.queues) == ["mail"]
    assert w1.gateway
    assert w1.connect_time.seconds > 0


async def test_drain_worker_asks_one_worker_to_stop(
    producer: Producer, raw_worker: OpenWorker, channel: grpc.aio.Channel
) -> None:
    target = await raw_worker(worker_id="target")
    bystander = await raw_worker(worker_id="bystander")
    stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
    drained = await stub.DrainWorker(worker_service_pb2.DrainWorkerRequest(worker_id="target"))
    assert drained.drained == 1
    drain = (await target.expect("drain")).drain
    assert drain.reason == Response.Drain.REASON_OPERATOR
    await bystander.nothing("drain", within=QUIET)
    job = await producer.enqueue()
    [item] = await bystander.jobs(1)
    assert item.job.id == job.id
    [listed] = [
        w
        for w in (await stub.ListWorkers(worker_service_pb2.ListWorkersRequest())).workers
        if w.worker_id == "target"
    ]
    assert listed.draining
    code, details = await code_of(
        stub.DrainWorker(worker_service_pb2.DrainWorkerRequest(worker_id="nobody"))
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "nobody" in details


# Priorities ------------------------------------------------------------------


@pytest.mark.providers("memory", "redis", "postgres", "sqlite")
async def test_high_priority_jobs_jump_the_line(producer: Producer, raw_worker: OpenWorker) -> None:
    low = [
        queue_service_pb2.EnqueueJobRequest(type="t", priority=1, payload=b"low")
        for _ in range(1000)
    ]
    await producer.stub.EnqueueJobs(queue_service_pb2.EnqueueJobsRequest(requests=low))
    worker = await raw_worker(max_in_flight=1)
    [first] = await worker.jobs(1)
    high = [(await producer.enqueue(payload=b"high", priority=9)).id for _ in range(10)]
    started: list[str] = []
    item = first
    for _ in range(11):
        await worker.ack(item.lease_id)
        [item] = await worker.jobs(1)
        started.append(item.job.id)
    # The one already running finishes; the next ten are the high ones, FIFO.
    assert started[:10] == high
    assert started[10] not in high


@pytest.mark.providers("memory", "redis", "postgres", "sqlite")
async def test_a_worker_of_several_queues_takes_the_highest_priority_of_all_first(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    for queue, priority in (("low", 1), ("mid", 5), ("high", 9)):
        requests = [
            queue_service_pb2.EnqueueJobRequest(type="t", queue=queue, priority=priority)
            for _ in range(4)
        ]
        await producer.stub.EnqueueJobs(queue_service_pb2.EnqueueJobsRequest(requests=requests))
    worker = await raw_worker(queues=["low", "mid", "high"], max_in_flight=6)
    taken = [item.job for item in await worker.jobs(6)]
    # One claim of six over three queues: the four high ones, then two mid ones.
    assert sorted(job.queue for job in taken) == ["high"] * 4 + ["mid"] * 2
    request = queue_service_pb2.GetQueueStatsRequest(queue="low")
    [low] = (await producer.stub.GetQueueStats(request)).queues
    assert low.pending == 4


@pytest.mark.providers("sqs")
async def test_priority_is_refused_where_the_backend_has_none(producer: Producer) -> None:
    code, details = await code_of(producer.enqueue(priority=9))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "priorit" in details
    assert (await producer.enqueue(priority=5)).priority == 5


async def test_priority_out_of_range_is_invalid(producer: Producer) -> None:
    code, details = await code_of(producer.enqueue(priority=10))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("priority:")
    assert (await producer.enqueue()).priority == 5


async def test_get_job_returns_every_attempts_error(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    job = await producer.enqueue(max_retries=2)
    worker = await raw_worker(worker_id="w")
    for attempt in range(1, 4):
        [item] = await worker.jobs(1, timeout=FRAME_TIMEOUT + 10)
        await worker.nack(item.lease_id, message=f"failure {attempt}", retry_delay=seconds(0))
        assert (await worker.result()).ok
    dead = await producer.wait_state(job.id, State.STATE_DEAD)
    assert [(e.message, e.attempt, e.worker_id) for e in dead.errors] == [
        ("failure 1", 1, "w"),
        ("failure 2", 2, "w"),
        ("failure 3", 3, "w"),
    ]
