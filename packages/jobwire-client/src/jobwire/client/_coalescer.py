"""Enqueueing a list of requests in as few unary calls as possible, on grpc.aio.

`send` is the asyncio twin of `_sync_coalescer.send`, for `AsyncPipeline`, and
what the enqueue stream falls back to on a gateway without `EnqueueStream`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from jobwire.client._base import BaseClient, EnqueueOutcome, batches
from jobwire.client._errors import JobwireError
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
