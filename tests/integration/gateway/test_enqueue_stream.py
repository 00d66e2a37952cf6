"""EnqueueStream on the wire: frames answered by id, refusals as the unary calls', draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobwire.gateway import Gateway
from jobwire.v1 import queue_service_pb2, queue_service_pb2_grpc

from conftest import GatewayFactory
from timing import FRAME_TIMEOUT

Q = queue_service_pb2
StreamCall = grpc.aio.StreamStreamCall[Q.EnqueueStreamRequest, Q.EnqueueStreamResponse]


@pytest.fixture
async def stub(gateway: Gateway) -> AsyncIterator[queue_service_pb2_grpc.QueueServiceAsyncStub]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield queue_service_pb2_grpc.QueueServiceStub(channel)


async def read(call: StreamCall) -> Q.EnqueueStreamResponse:
    response = await asyncio.wait_for(call.read(), FRAME_TIMEOUT)
    assert isinstance(response, Q.EnqueueStreamResponse)
    return response


async def opened(stub: queue_service_pb2_grpc.QueueServiceAsyncStub) -> StreamCall:
    """A stream the gateway accepted: its first frame is the `opened` notice."""
    call = stub.EnqueueStream()
    notice = await read(call)
    assert notice.opened
    assert notice.frame_id == 0
    assert not notice.HasField("enqueued")
    assert not notice.HasField("error")
    return call


def frame(frame_id: int, *types: str) -> Q.EnqueueStreamRequest:
    return Q.EnqueueStreamRequest(
        frame_id=frame_id,
        requests=[Q.EnqueueJobRequest(type=t, payload=b"{}") for t in types],
    )


def unary_error(error: grpc.aio.AioRpcError) -> tuple[int, str, str, dict[str, str]]:
    """What a unary call's status carries, as an `EnqueueStreamError` flattens it."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # AioRpcError is call-like
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return status.code, status.message, info.reason, dict(info.metadata)


def flattened(error: Q.EnqueueStreamError) -> tuple[int, str, str, dict[str, str]]:
    assert error.domain == "jobwire.dev"
    return error.code, error.message, error.reason, dict(error.metadata)


async def test_frames_are_answered_by_their_id_with_the_stored_jobs(
    stub: queue_service_pb2_grpc.QueueServiceAsyncStub,
) -> None:
    call = await opened(stub)
    await call.write(frame(7, "a"))
    await call.write(frame(9, "b", "c", "d"))
    answers = {answer.frame_id: answer for answer in [await read(call), await read(call)]}
    assert [r.job.type for r in answers[7].enqueued.results] == ["a"]
    assert [r.job.type for r in answers[9].enqueued.results] == ["b", "c", "d"]
    for answer in answers.values():
        for result in answer.enqueued.results:
            stored = await stub.GetJob(Q.GetJobRequest(id=result.job.id))
            assert stored.job.type == result.job.type
    await call.done_writing()
    assert await asyncio.wait_for(call.read(), FRAME_TIMEOUT) is grpc.aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_a_refused_frame_carries_the_unary_calls_error_and_the_stream_goes_on(
    stub: queue_service_pb2_grpc.QueueServiceAsyncStub,
) -> None:
    call = await opened(stub)
    # Several jobs: refused as EnqueueJobs refuses them, naming the entry.
    await call.write(frame(1, "ok", "", "ok"))
    refused = await read(call)
    assert refused.frame_id == 1
    assert refused.WhichOneof("outcome") == "error"
    with pytest.raises(grpc.aio.AioRpcError) as batch:
        await stub.EnqueueJobs(Q.EnqueueJobsRequest(requests=frame(0, "ok", "", "ok").requests))
    assert flattened(refused.error) == unary_error(batch.value)
    assert refused.error.metadata["field"] == "requests[1].type"

    # One job: refused as EnqueueJob refuses it, naming its field.
    await call.write(frame(2, ""))
    alone = await read(call)
    with pytest.raises(grpc.aio.AioRpcError) as single:
        await stub.EnqueueJob(Q.EnqueueJobRequest(type="", payload=b"{}"))
    assert flattened(alone.error) == unary_error(single.value)
    assert alone.error.metadata["field"] == "type"

    await call.write(Q.EnqueueStreamRequest(frame_id=3))
    empty = await read(call)
    assert empty.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert empty.error.metadata["field"] == "requests"

    await call.write(frame(4, "ok"))
    assert [r.job.type for r in (await read(call)).enqueued.results] == ["ok"]
    stats = await stub.GetQueueStats(Q.GetQueueStatsRequest())
    assert sum(queue.pending for queue in stats.queues) == 1, "nothing of a refused frame"
    call.cancel()


async def test_a_request_id_sent_again_returns_the_job_it_created(
    stub: queue_service_pb2_grpc.QueueServiceAsyncStub,
) -> None:
    call = await opened(stub)
    request = Q.EnqueueJobRequest(type="t", request_id="retried-once")
    await call.write(Q.EnqueueStreamRequest(frame_id=1, requests=[request]))
    first = (await read(call)).enqueued.results[0]
    await call.write(Q.EnqueueStreamRequest(frame_id=2, requests=[request]))
    again = (await read(call)).enqueued.results[0]
    assert again.job.id == first.job.id
    assert again.deduplicated
    call.cancel()


async def test_a_stream_holds_a_slot_of_max_streams(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(server={"max_streams": 1})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        first = await opened(stub)
        # Refused on arrival; nothing is written to it (grpc/grpc#36066).
        refused = stub.EnqueueStream()
        assert await refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "server.max_streams" in (await refused.details() or "")
        first.cancel()


async def test_a_stopping_gateway_drains_the_stream_then_refuses_new_ones(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = await gateway_factory()
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = queue_service_pb2_grpc.QueueServiceStub(channel)
        call = await opened(stub)
        stopping = asyncio.create_task(gateway.stop(grace=FRAME_TIMEOUT))
        notice = await read(call)
        assert notice.draining
        assert notice.frame_id == 0

        # Frames sent before the client heard the notice are still answered.
        await call.write(frame(5, "late"))
        assert [r.job.type for r in (await read(call)).enqueued.results] == ["late"]
        refused = stub.EnqueueStream()
        assert await refused.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (await refused.details() or "")

        # The client half-closes: the stream ends cleanly, and the gateway stops.
        await call.done_writing()
        assert await asyncio.wait_for(call.read(), FRAME_TIMEOUT) is grpc.aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        await asyncio.wait_for(stopping, FRAME_TIMEOUT)
