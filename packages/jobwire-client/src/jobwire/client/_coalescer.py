"""Coalescing the `AsyncClient`'s concurrent enqueues into `EnqueueJobs` calls.

`send` is the asyncio twin of `_sync_coalescer.send`, for `AsyncPipeline`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import grpc

from jobwire.client._base import BaseClient, EnqueueOutcome, batches
from jobwire.client._errors import JobwireError, StatusCode
from jobwire.v1 import queue_service_pb2

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub

_Pending = tuple[
    queue_service_pb2.EnqueueJobRequest, asyncio.Future[queue_service_pb2.EnqueueJobResponse]
]


async def send(
    client: BaseClient,
    stub: QueueServiceAsyncStub,
    requests: Sequence[queue_service_pb2.EnqueueJobRequest],
) -> list[EnqueueOutcome]:
    """Enqueues `requests` one call after the other; one outcome per request, in order.

    As `_sync_coalescer.send`: the entries of a batch the gateway refuses as a
    whole are sent alone, so each gets its own outcome.
    """
    outcomes: list[EnqueueOutcome] = []
    for batch in batches(requests, queue_service_pb2.EnqueueJobRequest.ByteSize):
        outcomes.extend(await _send_batch(client, stub, batch))
    return outcomes


async def _send_batch(
    client: BaseClient,
    stub: QueueServiceAsyncStub,
    batch: list[queue_service_pb2.EnqueueJobRequest],
) -> list[EnqueueOutcome]:
    timeout, metadata = client._timeout, client._metadata
    try:
        if len(batch) == 1:
            return [await stub.EnqueueJob(batch[0], timeout=timeout, metadata=metadata)]
        response = await stub.EnqueueJobs(
            queue_service_pb2.EnqueueJobsRequest(requests=batch),
            timeout=timeout,
            metadata=metadata,
        )
        return list(client._enqueue_results(len(batch), response))
    except grpc.RpcError as error:
        mapped = client._enqueue_error(error, len(batch))
        if mapped is None:
            return [
                outcome
                for request in batch
                for outcome in await _send_batch(client, stub, [request])
            ]
        return [mapped] * len(batch)
    except JobwireError as error:
        return [error] * len(batch)


class EnqueueCoalescer:
    """Sends the enqueues submitted during one loop iteration in one `EnqueueJobs` call."""

    def __init__(
        self, client: BaseClient, stub: QueueServiceAsyncStub, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._client = client
        self._stub = stub
        self._loop = loop
        self._pending: list[_Pending] = []
        self._sends: set[asyncio.Task[None]] = set()

    def submit(
        self, request: queue_service_pb2.EnqueueJobRequest
    ) -> asyncio.Future[queue_service_pb2.EnqueueJobResponse]:
        """Queues `request` for the next flush; the future resolves to its response."""
        future: asyncio.Future[queue_service_pb2.EnqueueJobResponse] = self._loop.create_future()
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append((request, future))
        return future

    def flush(self) -> None:
        """Starts sending everything submitted so far."""
        # A caller cancelled before its request left gets no job enqueued.
        pending = [item for item in self._pending if not item[1].cancelled()]
        self._pending = []
        for batch in batches(pending, lambda item: item[0].ByteSize()):
            send = self._loop.create_task(self._send(batch))
            self._sends.add(send)
            send.add_done_callback(self._sends.discard)

    async def aclose(self) -> None:
        """Sends what is pending and waits for every send to finish."""
        self.flush()
        await asyncio.gather(*self._sends)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            responses = await self._enqueue([request for request, _ in batch])
        except grpc.RpcError as error:
            if len(batch) > 1 and self._client._error(error).code is StatusCode.INVALID_ARGUMENT:
                # The gateway rejects a batch as a whole; sent alone, each request
                # gets its own outcome and one bad caller does not fail the others.
                await asyncio.gather(*(self._send([item]) for item in batch))
                return
            for _, future in batch:
                mapped = self._client._error(error)
                mapped.__cause__ = error
                _set_exception(future, mapped)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:
            for _, future in batch:
                _set_exception(future, error)
        else:
            for (_, future), response in zip(batch, responses, strict=True):
                if not future.done():
                    future.set_result(response)

    async def _enqueue(
        self, requests: list[queue_service_pb2.EnqueueJobRequest]
    ) -> Sequence[queue_service_pb2.EnqueueJobResponse]:
        client = self._client
        if len(requests) == 1:
            return [
                await self._stub.EnqueueJob(
                    requests[0], timeout=client._timeout, metadata=client._metadata
                )
            ]
        response = await self._stub.EnqueueJobs(
            queue_service_pb2.EnqueueJobsRequest(requests=requests),
            timeout=client._timeout,
            metadata=client._metadata,
        )
        return client._enqueue_results(len(requests), response)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    # A caller that was cancelled no longer awaits its future.
    if not future.done():
        future.set_exception(error)
