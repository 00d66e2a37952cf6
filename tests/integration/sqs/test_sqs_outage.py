"""The SQS endpoint goes away while workers are connected, and comes back."""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack

import grpc
import pytest

from jobwire.v1 import queue_service_pb2

from conftest import GatewayFactory
from sqs_support import MotoServer, create_queues, free_port, moto_process
from support import Producer, RawWorker, State

OUTAGE = 5.0


async def test_workers_stay_connected_while_sqs_is_down_and_resume_after(
    gateway_factory: GatewayFactory, moto_server: MotoServer
) -> None:
    # The session's moto server is not used, only its test credentials: the
    # outage needs an endpoint of its own, a process that can be killed.
    port = free_port()
    with ExitStack() as first_run:
        endpoint = first_run.enter_context(moto_process(port))
        queues = await create_queues(endpoint)
        gateway = await gateway_factory(provider=queues.provider_settings(wait_time=1))
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            producer = Producer(channel)
            worker = await RawWorker(channel, worker_id="patient").open()
            before = await producer.enqueue()
            [item] = await worker.jobs(1)
            await worker.ack(item.lease_id)
            assert (await worker.result()).ok
            await producer.wait_state(before.id, State.STATE_COMPLETED)

            first_run.close()  # SQS is gone
            down_since = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await producer.enqueue()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "SQS endpoint unreachable" in (refused.value.details() or "")
            # The records still answer, and the refused job left none behind.
            assert (await producer.get(before.id)).state == State.STATE_COMPLETED
            listed = await producer.stub.ListJobs(queue_service_pb2.ListJobsRequest())
            assert [job.id for job in listed.jobs] == [before.id]
            await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_since)))
            assert worker.call.done() is False  # the stream stays open throughout

            with moto_process(port):  # back on the same port, empty like a new endpoint
                await create_queues(endpoint)
                after = await producer.enqueue()
                [item] = await worker.jobs(1, timeout=10)
                assert item.job.id == after.id
                await worker.ack(item.lease_id)
                assert (await worker.result()).ok
                await producer.wait_state(after.id, State.STATE_COMPLETED)
                worker.drop()
                await gateway.stop()
