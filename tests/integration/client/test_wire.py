"""What the clients put on the wire, checked against a scripted QueueService on a real server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from google.protobuf.message import Message

from jobwire.client import (
    AsyncClient,
    Client,
    GatewayUnavailableError,
    JobRequest,
    PermissionDeniedError,
    RetryConfig,
)
from jobwire.v1 import job_pb2, queue_service_pb2, queue_service_pb2_grpc

from timing import FRAME_TIMEOUT

Context = grpc.aio.ServicerContext[Message, Message]
Frame = queue_service_pb2.EnqueueStreamRequest
_UNAVAILABLE = queue_service_pb2.EnqueueStreamError(
    code=grpc.StatusCode.UNAVAILABLE.value[0],
    message="try again",
    reason="UNAVAILABLE",
    domain="jobwire.dev",
)


class ScriptedQueue(queue_service_pb2_grpc.QueueServiceServicer):
    """Records every call and enqueue frame; the first `unavailable` fail with UNAVAILABLE.

    With `streams` False it answers `EnqueueStream` as a gateway older than it
    does: UNIMPLEMENTED.
    """

    def __init__(self) -> None:
        self.address = ""
        self.calls: list[tuple[str, Message]] = []
        self.unavailable = 0
        self.streams = True
        self.streams_opened = 0
        #: The next frames that end their stream with this code instead of an answer.
        self.break_streams: list[grpc.StatusCode] = []
        #: Set when a call arrives; while `hold` is not None, calls wait for it.
        self.arrived = asyncio.Event()
        self.hold: asyncio.Event | None = None

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    async def _record(self, method: str, request: Message, context: Context) -> None:
        self.calls.append((method, request))
        self.arrived.set()
        if self.hold is not None:
            await self.hold.wait()
        if self.unavailable:
            self.unavailable -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "try again")

    @staticmethod
    def _stored(
        request: queue_service_pb2.EnqueueJobRequest,
    ) -> queue_service_pb2.EnqueueJobResponse:
        job = job_pb2.Job(
            id=uuid.uuid4().hex,
            queue=request.queue,
            type=request.type,
            content_type=request.content_type,
            state=job_pb2.Job.STATE_PENDING,
        )
        return queue_service_pb2.EnqueueJobResponse(job=job)

    async def EnqueueJob(
        self, request: queue_service_pb2.EnqueueJobRequest, context: Context
    ) -> queue_service_pb2.EnqueueJobResponse:
        await self._record("EnqueueJob", request, context)
        return self._stored(request)

    async def EnqueueJobs(
        self, request: queue_service_pb2.EnqueueJobsRequest, context: Context
    ) -> queue_service_pb2.EnqueueJobsResponse:
        await self._record("EnqueueJobs", request, context)
        return queue_service_pb2.EnqueueJobsResponse(
            results=[self._stored(r) for r in request.requests]
        )

    async def EnqueueStream(
        self, request_iterator: AsyncIterator[Frame], context: Context
    ) -> AsyncIterator[queue_service_pb2.EnqueueStreamResponse]:
        if not self.streams:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        self.streams_opened += 1
        yield queue_service_pb2.EnqueueStreamResponse(opened=True)
        async for frame in request_iterator:
            self.calls.append(("EnqueueStream", frame))
            self.arrived.set()
            if self.hold is not None:
                await self.hold.wait()
            if self.break_streams:
                await context.abort(self.break_streams.pop(0), "stream broken")
            answer = queue_service_pb2.EnqueueStreamResponse(frame_id=frame.frame_id)
            if self.unavailable:
                self.unavailable -= 1
                answer.error.CopyFrom(_UNAVAILABLE)
            else:
                answer.enqueued.results.extend(self._stored(r) for r in frame.requests)
            yield answer

    async def GetJob(
        self, request: queue_service_pb2.GetJobRequest, context: Context
    ) -> queue_service_pb2.GetJobResponse:
        await self._record("GetJob", request, context)
        job = job_pb2.Job(id=request.id, type="t", state=job_pb2.Job.STATE_PENDING)
        return queue_service_pb2.GetJobResponse(job=job)


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedQueue]:
    queue = ScriptedQueue()  # type: ignore[abstract]  # serves only what the tests call
    server = grpc.aio.server()
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(queue, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    queue.address = f"127.0.0.1:{port}"
    yield queue
    await server.stop(None)


@pytest.fixture
def older(scripted: ScriptedQueue) -> ScriptedQueue:
    """The scripted queue as a gateway without `EnqueueStream`."""
    scripted.streams = False
    return scripted


def _enqueued(call: tuple[str, Message]) -> list[queue_service_pb2.EnqueueJobRequest]:
    _, request = call
    if isinstance(request, queue_service_pb2.EnqueueJobsRequest | Frame):
        return list(request.requests)
    assert isinstance(request, queue_service_pb2.EnqueueJobRequest)
    return [request]


async def test_concurrent_enqueues_share_one_frame(scripted: ScriptedQueue) -> None:
    async with AsyncClient(scripted.address) as client:
        jobs = await asyncio.gather(*(client.enqueue("t", n) for n in range(100)))
    assert scripted.methods() == ["EnqueueStream"]
    [sent] = [_enqueued(call) for call in scripted.calls]
    assert [request.payload for request in sent] == [str(n).encode() for n in range(100)]
    assert len({request.request_id for request in sent}) == 100
    assert len({job.id for job in jobs}) == 100


async def test_lone_enqueues_are_frames_of_one_on_one_stream(scripted: ScriptedQueue) -> None:
    async with AsyncClient(scripted.address) as client:
        await client.enqueue("t")
        await client.enqueue("t")
    assert [len(_enqueued(call)) for call in scripted.calls] == [1, 1]
    assert scripted.streams_opened == 1
    frame_ids = [request.frame_id for _, request in scripted.calls]  # type: ignore[attr-defined]
    assert len(set(frame_ids)) == 2


async def test_frames_hold_at_most_1000(scripted: ScriptedQueue) -> None:
    async with AsyncClient(scripted.address) as client:
        await asyncio.gather(*(client.enqueue("t") for _ in range(2001)))
    assert sorted(len(_enqueued(call)) for call in scripted.calls) == [1, 1000, 1000]


async def test_threads_enqueueing_meanwhile_share_the_next_frame(scripted: ScriptedQueue) -> None:
    scripted.hold = asyncio.Event()
    client = Client(scripted.address)
    # The scripted server runs on this loop; the blocking calls must leave it free.
    try:
        first = asyncio.ensure_future(asyncio.to_thread(client.enqueue, "t", 0))
        await asyncio.wait_for(scripted.arrived.wait(), FRAME_TIMEOUT)
        later = [asyncio.ensure_future(asyncio.to_thread(client.enqueue, "t", n)) for n in range(5)]
        await asyncio.wait_for(_submitted(client, 6), FRAME_TIMEOUT)
        scripted.hold.set()
        jobs = await asyncio.gather(first, *later)
    finally:
        await asyncio.to_thread(client.close)
    sizes = [len(_enqueued(call)) for call in scripted.calls]
    # One frame more may have left beside the first; the others waited for an answer.
    assert sizes[0] == 1
    assert sum(sizes) == 6
    assert len(sizes) <= 3
    assert len({job.id for job in jobs}) == 6


async def _submitted(client: Client, count: int) -> None:
    """Until `count` enqueues reached the client's loop thread."""
    engine = client._enqueuer._enqueuer
    while engine is None or engine._unsettled < count:  # a counter, not an event
        await asyncio.sleep(0.01)
        engine = client._enqueuer._enqueuer


async def test_aclose_sends_what_is_pending(scripted: ScriptedQueue) -> None:
    client = AsyncClient(scripted.address)
    pending = [asyncio.ensure_future(client.enqueue("t")) for _ in range(3)]
    await asyncio.sleep(0)
    await client.aclose()
    assert all(task.done() for task in pending)
    assert len({task.result().id for task in pending}) == 3


async def test_a_frame_answered_unavailable_is_sent_again_with_the_same_request_id(
    scripted: ScriptedQueue,
) -> None:
    scripted.unavailable = 2
    async with AsyncClient(scripted.address) as client:
        await client.enqueue("t")
    assert scripted.methods() == ["EnqueueStream"] * 3
    assert len({r.request_id for call in scripted.calls for r in _enqueued(call)}) == 1
    assert scripted.streams_opened == 1, "a refused frame leaves the stream open"


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED])
async def test_a_frame_on_a_broken_stream_is_sent_again_on_a_new_one(
    scripted: ScriptedQueue, code: grpc.StatusCode
) -> None:
    scripted.break_streams = [code, code]
    async with AsyncClient(scripted.address) as client:
        job = await client.enqueue("t")
    assert scripted.streams_opened == 3
    assert len({r.request_id for call in scripted.calls for r in _enqueued(call)}) == 1
    assert job.type == "t"


async def test_a_stream_broken_for_good_fails_its_callers_after_the_attempts(
    scripted: ScriptedQueue,
) -> None:
    scripted.break_streams = [grpc.StatusCode.UNAVAILABLE] * 2
    retry = RetryConfig(max_attempts=2, initial_backoff=timedelta(milliseconds=10))
    async with AsyncClient(scripted.address, retry=retry) as client:
        with pytest.raises(GatewayUnavailableError, match="stream broken"):
            await client.enqueue("t")
    assert scripted.streams_opened == 2


async def test_a_stream_error_a_retry_cannot_mend_fails_at_once(scripted: ScriptedQueue) -> None:
    scripted.break_streams = [grpc.StatusCode.PERMISSION_DENIED]
    async with AsyncClient(scripted.address) as client:
        with pytest.raises(PermissionDeniedError, match="stream broken"):
            await client.enqueue("t")
        assert (await client.enqueue("u")).type == "u", "the next enqueue opens a new stream"
    assert scripted.streams_opened == 2


async def test_an_older_gateway_gets_unary_calls(older: ScriptedQueue) -> None:
    async with AsyncClient(older.address) as client:
        jobs = await asyncio.gather(*(client.enqueue("t", n) for n in range(100)))
        await client.enqueue("t")
    assert older.methods() == ["EnqueueJobs", "EnqueueJob"]
    assert len({job.id for job in jobs}) == 100


async def test_an_older_gateway_gets_unary_calls_from_the_sync_client_too(
    older: ScriptedQueue,
) -> None:
    with Client(older.address) as client:
        await asyncio.to_thread(client.enqueue, "t")
        await asyncio.to_thread(client.enqueue, "t")
    assert older.methods() == ["EnqueueJob", "EnqueueJob"]


async def test_unavailable_is_retried_by_grpc_with_the_same_request_id(
    older: ScriptedQueue,
) -> None:
    older.unavailable = 2
    async with AsyncClient(older.address) as client:
        await client.enqueue("t")
    assert older.methods() == ["EnqueueJob"] * 3
    assert len({request.request_id for _, request in older.calls}) == 1  # type: ignore[attr-defined]


async def test_sync_client_retries_too(scripted: ScriptedQueue) -> None:
    scripted.unavailable = 2
    with Client(scripted.address) as client:
        # The scripted server runs on this loop; the blocking call must leave it free.
        job = await asyncio.to_thread(client.get_job, "j1")
    assert job.id == "j1"
    assert scripted.methods() == ["GetJob"] * 3


async def test_retries_can_be_turned_off(scripted: ScriptedQueue) -> None:
    scripted.unavailable = 1
    async with AsyncClient(scripted.address, retry=RetryConfig(max_attempts=1)) as client:
        with pytest.raises(GatewayUnavailableError, match="try again"):
            await client.get_job("j1")
    assert scripted.methods() == ["GetJob"]


async def test_enqueue_many_splits_large_batches(scripted: ScriptedQueue) -> None:
    async with AsyncClient(scripted.address) as client:
        jobs = await client.enqueue_many(JobRequest("t", b"x" * 1_000_000) for _ in range(7))
    assert len(jobs) == 7
    assert [len(_enqueued(call)) for call in scripted.calls] == [3, 3, 1]


@pytest.mark.parametrize("streams", [True, False], ids=["stream", "unary"])
async def test_enqueue_cancelled_before_the_flush_is_not_sent(
    scripted: ScriptedQueue, streams: bool
) -> None:
    scripted.streams = streams
    async with AsyncClient(scripted.address) as client:
        doomed = asyncio.ensure_future(client.enqueue("doomed"))
        kept = asyncio.ensure_future(client.enqueue("kept"))
        await asyncio.sleep(0)  # both submitted, flush not run yet
        doomed.cancel()
        await kept
    assert [request.type for call in scripted.calls for request in _enqueued(call)] == ["kept"]


async def test_a_pipeline_sends_one_loop_iterations_jobs_in_one_call_in_order(
    scripted: ScriptedQueue,
) -> None:
    async with AsyncClient(scripted.address) as client, client.pipeline() as pipe:
        handles = [pipe.enqueue("t", n) for n in range(2500)]
    assert scripted.methods() == ["EnqueueJobs"] * 3, "one call after the other, at most 1000"
    sent = [request for call in scripted.calls for request in _enqueued(call)]
    assert [len(_enqueued(call)) for call in scripted.calls] == [1000, 1000, 500]
    assert [request.payload for request in sent] == [str(n).encode() for n in range(2500)]
    assert [handle.request.request_id for handle in handles] == [r.request_id for r in sent]


async def test_a_pipeline_has_one_call_in_flight_and_the_jobs_meanwhile_leave_together(
    scripted: ScriptedQueue,
) -> None:
    scripted.hold = asyncio.Event()
    async with AsyncClient(scripted.address) as client, client.pipeline() as pipe:
        first = pipe.enqueue("t", 0)
        await asyncio.wait_for(scripted.arrived.wait(), FRAME_TIMEOUT)
        later = []
        for n in range(1, 6):  # over several loop iterations, while the first call is held
            later.append(pipe.enqueue("t", n))
            await asyncio.sleep(0)
        assert scripted.methods() == ["EnqueueJob"], "no second call while one is in flight"
        scripted.hold.set()
        await pipe.flush()
    assert scripted.methods() == ["EnqueueJob", "EnqueueJobs"]
    assert [len(_enqueued(call)) for call in scripted.calls] == [1, 5]
    assert all(handle.done() for handle in [first, *later])
