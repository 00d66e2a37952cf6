"""Limits a client cannot push the gateway past, each answered with a clear status."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobwire.gateway import Gateway
from jobwire.gateway.servicers._session import OUTBOX_LIMIT
from jobwire.v1 import queue_service_pb2, queue_service_pb2_grpc

from conftest import GatewayFactory
from support import RawWorker, Request

Q = queue_service_pb2


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # AioRpcError is call-like
    assert status is not None, "rich status details missing"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info.reason


async def test_open_streams_are_capped(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(server={"max_streams": 2})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        job = (await queues.EnqueueJob(Q.EnqueueJobRequest(type="t"))).job
        first = await RawWorker(channel, worker_id="a").open()
        watch = queues.WatchJob(Q.WatchJobRequest(id=job.id))
        await watch.read()  # the first snapshot: the watch holds its slot

        # Refused on arrival: nothing is written to it, since a write can race the
        # refusal and fail in gRPC core instead (grpc/grpc#36066).
        refused = RawWorker(channel, worker_id="b")
        assert await refused.call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "server.max_streams" in (await refused.call.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await queues.WatchJob(Q.WatchJobRequest(id=job.id)).read()
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert reason_of(caught.value) == "RESOURCE_EXHAUSTED"

        # Closed streams free their slots (the gateway sees the cancellations shortly).
        first.drop()
        watch.cancel()
        async with asyncio.timeout(5):
            while gateway._streams.open:  # noqa: ASYNC110  # a counter, not an event
                await asyncio.sleep(0.02)
        (await RawWorker(channel, worker_id="c").open()).drop()


async def test_oversized_message_is_refused(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(server={"max_message_bytes": 64 * 1024})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        request = Q.EnqueueJobRequest(type="t", attributes={"k": "v" * 100_000})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await queues.EnqueueJob(request)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (caught.value.details() or "")
        await queues.EnqueueJob(Q.EnqueueJobRequest(type="t"))  # still serving


async def test_attribute_bytes_are_capped(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        request = Q.EnqueueJobRequest(type="t", attributes={"k": "v" * 5000})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await queues.EnqueueJob(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "attributes" in (caught.value.details() or "")


async def test_credits_never_exceed_the_cap(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(server={"max_in_flight_limit": 5})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        batch = Q.EnqueueJobsRequest(requests=[Q.EnqueueJobRequest(type="t")] * 20)
        await queues.EnqueueJobs(batch)
        worker = await RawWorker(channel, max_in_flight=5).open()
        await worker.call.write(Request(flow=Request.Flow(credits=2**31 - 1)))
        assert len(await worker.jobs(5)) == 5
        await worker.nothing("delivery", within=0.3)
        worker.drop()


async def test_a_worker_that_never_reads_cannot_grow_the_outbox(gateway: Gateway) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        call = RawWorker(channel).call
        await call.write(RawWorker(channel).open_frame)
        unknown = Request(progress=Request.Progress(lease_id="nope"))
        # Each frame asks for a `lease_revoked` answer the worker never reads.
        # Writes stop completing once the gateway stops reading; that is the point.
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for sent in range(1, 200_000):  # noqa: B007  # the count is read below
                await call.write(unknown)

        with pytest.raises(TimeoutError):
            await asyncio.wait_for(flood(), 3)
        assert sent < 200_000
        (session,) = gateway._workers._sessions
        assert session._outbox.qsize() <= OUTBOX_LIMIT + 1
        call.cancel()
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        queues = queue_service_pb2_grpc.QueueServiceStub(channel)
        await queues.EnqueueJob(Q.EnqueueJobRequest(type="t"))  # still serving
