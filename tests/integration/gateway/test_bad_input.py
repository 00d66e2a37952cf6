"""Every RPC answers bad input with the right status and a clear message, and keeps serving."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobwire.v1 import job_pb2, queue_service_pb2

from backends import CONTRACT
from support import Producer, RawWorker, Request, State, seconds

pytestmark = CONTRACT
OpenWorker = Callable[..., Awaitable[RawWorker]]
Q = queue_service_pb2
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # AioRpcError is call-like
    assert status is not None, "rich status details missing"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.domain == "jobwire.dev"
    return info


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str, *words: str
) -> error_details_pb2.ErrorInfo:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, error.details()
    for word in words:
        assert word in (error.details() or ""), error.details()
    info = error_info(error)
    assert info.reason == reason
    return info


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"type": ""}, "type", ["required"]),
        ({"type": "x" * 300}, "type", ["256"]),
        ({"queue": "no spaces"}, "queue", ["invalid queue name"]),
        ({"delay": seconds(-1)}, "delay", ["negative"]),
        ({"max_retries": -1}, "max_retries", ["between 0 and 100"]),
        ({"timeout": seconds(0)}, "timeout", ["positive"]),
        ({"attributes": {f"k{i}": "v" for i in range(100)}}, "attributes", ["at most 64"]),
    ],
)
async def test_enqueue_rejects_invalid_fields(
    producer: Producer, fields: dict[str, Any], field: str, words: list[str]
) -> None:
    request = Q.EnqueueJobRequest(**{"type": "t", **fields})
    info = await expect_error(
        producer.stub.EnqueueJob(request), INVALID, "INVALID_ARGUMENT", field, *words
    )
    assert info.metadata["field"] == field


async def test_oversized_payload(producer: Producer) -> None:
    request = Q.EnqueueJobRequest(type="t", payload=b"x" * (1024 * 1024 + 1))
    await expect_error(
        producer.stub.EnqueueJob(request), INVALID, "PAYLOAD_TOO_LARGE", "payload", "1048576"
    )


async def test_far_future_schedule_time(producer: Producer) -> None:
    request = Q.EnqueueJobRequest(type="t")
    request.schedule_time.FromSeconds(10**11)
    await expect_error(
        producer.stub.EnqueueJob(request), INVALID, "INVALID_ARGUMENT", "schedule_time"
    )


async def test_bad_batch_enqueues_nothing_and_names_the_entry(producer: Producer) -> None:
    batch = Q.EnqueueJobsRequest(requests=[Q.EnqueueJobRequest(type="ok"), Q.EnqueueJobRequest()])
    info = await expect_error(
        producer.stub.EnqueueJobs(batch), INVALID, "INVALID_ARGUMENT", "requests[1].type"
    )
    assert info.metadata["field"] == "requests[1].type"
    await expect_error(
        producer.stub.EnqueueJobs(Q.EnqueueJobsRequest()), INVALID, "INVALID_ARGUMENT", "requests"
    )
    too_many = Q.EnqueueJobsRequest(requests=[Q.EnqueueJobRequest(type="t")] * 1001)
    await expect_error(producer.stub.EnqueueJobs(too_many), INVALID, "INVALID_ARGUMENT", "1000")
    stats = await producer.stub.GetQueueStats(Q.GetQueueStatsRequest())
    assert all(q.pending == 0 for q in stats.queues)


async def test_unknown_and_missing_job_ids(producer: Producer) -> None:
    await expect_error(
        producer.stub.GetJob(Q.GetJobRequest(id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
        "nope",
    )
    await expect_error(producer.stub.GetJob(Q.GetJobRequest()), INVALID, "INVALID_ARGUMENT", "id")
    await expect_error(
        producer.stub.CancelJob(Q.CancelJobRequest(id="nope")),
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in producer.stub.WatchJob(Q.WatchJobRequest(id="nope")):
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "JOB_NOT_FOUND"


async def test_cancel_finished_job(producer: Producer, raw_worker: OpenWorker) -> None:
    job = await producer.enqueue()
    worker = await raw_worker()
    [item] = await worker.jobs(1)
    await worker.ack(item.lease_id)
    await producer.wait_state(job.id, State.STATE_COMPLETED)
    await expect_error(
        producer.stub.CancelJob(Q.CancelJobRequest(id=job.id)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "JOB_TERMINAL",
        "already finished",
    )


async def test_list_jobs_rejects_bad_paging(producer: Producer) -> None:
    for size in (-1, 1001):
        await expect_error(
            producer.stub.ListJobs(Q.ListJobsRequest(page_size=size)),
            INVALID,
            "INVALID_ARGUMENT",
            "page_size",
        )
    await expect_error(
        producer.stub.ListJobs(Q.ListJobsRequest(page_token="%%%garbage")),
        INVALID,
        "INVALID_PAGE_TOKEN",
        "page_token",
    )
    for _ in range(3):
        await producer.enqueue()
    page = await producer.stub.ListJobs(Q.ListJobsRequest(page_size=1))
    assert page.next_page_token
    other_filter = Q.ListJobsRequest(page_size=1, type="x", page_token=page.next_page_token)
    await expect_error(
        producer.stub.ListJobs(other_filter), INVALID, "INVALID_PAGE_TOKEN", "other filters"
    )
    await expect_error(
        # An enum number no version of the contract defines, as a foreign client might send.
        producer.stub.ListJobs(Q.ListJobsRequest(states=[99])),  # type: ignore[list-item]
        INVALID,
        "INVALID_ARGUMENT",
        "99",
    )


async def test_stats_rejects_bad_queue_name(producer: Producer) -> None:
    await expect_error(
        producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="a b")),
        INVALID,
        "INVALID_ARGUMENT",
        "queue",
    )


async def test_stream_must_start_with_open(channel: grpc.aio.Channel) -> None:
    worker = RawWorker(channel)
    await worker.call.write(Request(flow=Request.Flow(credits=1)))
    assert await worker.call.code() == INVALID
    assert "first frame of StreamJobs must be `open`" in (await worker.call.details() or "")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": 100_000}, "max_in_flight"),
        ({"worker_id": ""}, "worker_id"),
        ({"queues": ["bad queue"]}, "queue"),
    ],
)
async def test_invalid_open_is_refused(
    channel: grpc.aio.Channel, fields: dict[str, Any], words: str
) -> None:
    worker = RawWorker(channel, **fields)
    await worker.call.write(worker.open_frame)
    assert await worker.call.code() == INVALID
    assert words in (await worker.call.details() or "")


async def test_foreign_and_unknown_leases_do_not_kill_the_stream(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    await producer.enqueue()
    owner = await raw_worker(worker_id="owner")
    [item] = await owner.jobs(1)
    thief = await raw_worker(worker_id="thief")
    await thief.ack(item.lease_id, "made-up")
    frame = (await thief.expect("ack_result")).ack_result
    assert [(i.ok, i.reason) for i in frame.items] == [
        (False, "LEASE_NOT_FOUND"),
        (False, "LEASE_NOT_FOUND"),
    ]
    await thief.send(Request(extend_lease=Request.ExtendLease(lease_ids=[item.lease_id])))
    assert (await thief.expect("lease_revoked")).lease_revoked.lease_id == item.lease_id
    await thief.nack(item.lease_id, retry_delay=seconds(-5))
    assert (await thief.result()).reason == "INVALID_ARGUMENT"
    # The owner still holds the lease and completes the job.
    await owner.ack(item.lease_id)
    assert (await owner.result()).ok
    # The thief's stream still works: with the owner gone (its freed credit
    # would compete for the next job), it gets the next job.
    await owner.close()
    second = await producer.enqueue()
    assert (await thief.jobs(1))[0].job.id == second.id


@pytest.mark.parametrize(
    "frame",
    [
        Request(),
        Request(open=Request.Open(worker_id="again", max_in_flight=1)),
        Request(flow=Request.Flow(credits=0)),
    ],
    ids=["empty", "second-open", "zero-credits"],
)
async def test_protocol_errors_end_only_that_stream(
    producer: Producer, raw_worker: OpenWorker, frame: Request
) -> None:
    job = await producer.enqueue()
    bad = await raw_worker(worker_id="bad")
    [item] = await bad.jobs(1)
    await bad.send(frame)
    assert await bad.status() == INVALID
    # The job it held is released at once, and the gateway keeps serving.
    good = await raw_worker(worker_id="good")
    [again] = await good.jobs(1)
    assert (again.job.id, again.attempt) == (job.id, 2)
    assert item.lease_id != again.lease_id


async def test_gateway_serves_after_every_bad_request(producer: Producer) -> None:
    bad_calls: list[Awaitable[Any]] = [
        producer.stub.EnqueueJob(Q.EnqueueJobRequest()),
        producer.stub.GetJob(Q.GetJobRequest(id="x" * 1000)),
        producer.stub.ListJobs(Q.ListJobsRequest(page_token="x")),
        producer.stub.CancelJob(Q.CancelJobRequest(id="x", reason="r" * 5000)),
    ]
    for call in bad_calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() not in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    job = await producer.enqueue()
    assert (await producer.get(job.id)).state == job_pb2.Job.STATE_PENDING
