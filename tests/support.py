"""Test drivers that speak the raw jobwire.v1 protocol (no SDK involved)."""

from __future__ import annotations

import asyncio
import sys
import threading
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import duration_pb2

from jobwire.gateway._models import NewJob
from jobwire.v1 import job_pb2, queue_service_pb2, queue_service_pb2_grpc, worker_service_pb2_grpc
from jobwire.v1.worker_service_pb2 import StreamJobsRequest, StreamJobsResponse

from timing import FRAME_TIMEOUT

Request = StreamJobsRequest
Response = StreamJobsResponse
State = job_pb2.Job.State


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float = FRAME_TIMEOUT,
    interval: float = 0.02,
) -> None:
    """Wait until ``check()`` (a function or coroutine function) is true.

    Polling on purpose: the state lives in another process or a database.
    On timeout, the error shows what the event loop's default executor threads
    were doing: a check that never returns is often one waiting for them.
    """
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = check()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError as error:
        raise TimeoutError(f"not true within {timeout} s{executor_threads()}") from error


def executor_threads() -> str:
    """The stacks of the default executor's threads (named ``asyncio_N``), for a failure."""
    frames = sys._current_frames()
    stacks = [
        f"\n--- thread {thread.name}:\n" + "".join(traceback.format_stack(frames[thread.ident]))
        for thread in threading.enumerate()
        if thread.name.startswith("asyncio_") and thread.ident in frames
    ]
    return "".join(stacks) if stacks else " (no default executor threads)"


def new_job(**fields: Any) -> NewJob:
    """A validated enqueue request, as the gateway makes one: defaults, then ``fields``."""
    values: dict[str, Any] = {
        "queue": "default",
        "type": "t",
        "payload": b"{}",
        "content_type": "application/json",
        "attributes": {},
        "max_retries": 3,
        "timeout": None,
        "deduplication_key": "",
        "schedule_time": None,
        "request_id": "",
    }
    return NewJob(**(values | fields))


def seconds(value: float) -> duration_pb2.Duration:
    span = duration_pb2.Duration()
    span.FromTimedelta(timedelta(seconds=value))
    return span


class Producer:
    """Thin async helper over the QueueService stub."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.stub = queue_service_pb2_grpc.QueueServiceStub(channel)

    async def enqueue(self, type: str = "t", payload: bytes = b"{}", **fields: Any) -> job_pb2.Job:
        request = queue_service_pb2.EnqueueJobRequest(type=type, payload=payload, **fields)
        return (await self.stub.EnqueueJob(request)).job

    async def get(self, job_id: str) -> job_pb2.Job:
        return (await self.stub.GetJob(queue_service_pb2.GetJobRequest(id=job_id))).job

    async def wait_state(
        self, job_id: str, state: int, timeout: float = FRAME_TIMEOUT
    ) -> job_pb2.Job:
        """Follow WatchJob until the job is in ``state``."""
        request = queue_service_pb2.WatchJobRequest(id=job_id, view=job_pb2.JOB_VIEW_FULL)
        async with asyncio.timeout(timeout):
            async for update in self.stub.WatchJob(request):
                if update.job.state == state:
                    return update.job
        raise AssertionError(f"job {job_id} ended in {State.Name(update.job.state)}")


class RawWorker:
    """A worker stream driven frame by frame; received frames are sorted by kind."""

    def __init__(self, channel: grpc.aio.Channel, **open_fields: Any) -> None:
        open_fields.setdefault("worker_id", "raw-worker")
        open_fields.setdefault("max_in_flight", 1)
        self.open_frame = Request(open=Request.Open(**open_fields))
        self.call = worker_service_pb2_grpc.WorkerServiceStub(channel).StreamJobs()
        self._frames: dict[str, asyncio.Queue[Response]] = defaultdict(asyncio.Queue)
        self._reader: asyncio.Task[None] | None = None
        self.opened: Response.Opened | None = None

    async def open(self) -> RawWorker:
        await self.call.write(self.open_frame)
        self._reader = asyncio.create_task(self._read())
        self.opened = (await self.expect("opened")).opened
        return self

    async def _read(self) -> None:
        while True:
            try:
                frame = await self.call.read()
            except grpc.aio.AioRpcError:
                return  # the status is read through `status()`
            if frame is grpc.aio.EOF:
                return
            assert isinstance(frame, Response)
            self._frames[frame.WhichOneof("kind") or ""].put_nowait(frame)

    async def expect(self, kind: str, timeout: float = FRAME_TIMEOUT) -> Response:
        async with asyncio.timeout(timeout):
            return await self._frames[kind].get()

    async def nothing(self, kind: str, within: float) -> None:
        """Assert no frame of ``kind`` arrives within ``within`` seconds."""
        try:
            frame = await self.expect(kind, timeout=within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected {kind}: {frame}")

    async def jobs(
        self, count: int, timeout: float = FRAME_TIMEOUT
    ) -> list[Response.Delivery.Item]:
        items: list[Response.Delivery.Item] = []
        async with asyncio.timeout(timeout):
            while len(items) < count:
                items.extend((await self._frames["delivery"].get()).delivery.items)
        return items

    async def ack(
        self, *lease_ids: str, result: bytes | None = None, content_type: str = ""
    ) -> None:
        items = [
            Request.Ack.Item(lease_id=lease, result=result, result_content_type=content_type)
            for lease in lease_ids
        ]
        await self.call.write(Request(ack=Request.Ack(items=items)))

    async def nack(self, lease_id: str, message: str = "boom", **fields: Any) -> None:
        failure = job_pb2.JobFailure(message=message, type="RuntimeError")
        item = Request.Nack.Item(lease_id=lease_id, failure=failure, **fields)
        await self.call.write(Request(nack=Request.Nack(items=[item])))

    async def send(self, frame: Request) -> None:
        await self.call.write(frame)

    async def result(self, timeout: float = FRAME_TIMEOUT) -> Response.AckResult.Item:
        return (await self.expect("ack_result", timeout)).ack_result.items[0]

    async def close(self) -> None:
        """End the stream from the worker side and wait for the gateway to finish it."""
        await self.call.done_writing()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)

    def drop(self) -> None:
        """Vanish like a crashed worker."""
        self.call.cancel()
        if self._reader is not None:
            self._reader.cancel()

    async def status(self) -> grpc.StatusCode:
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return await self.call.code()
