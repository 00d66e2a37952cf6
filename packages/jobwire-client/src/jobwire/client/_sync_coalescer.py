"""Enqueueing a list of requests in as few unary calls as possible, blocking.

`send` serves `Pipeline` (`Client.pipeline()`); its asyncio twin is
`_coalescer.send`. `Client.enqueue` itself goes over the enqueue stream
(`_sync_stream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc

from jobwire.client._base import BaseClient, EnqueueOutcome, batches
from jobwire.client._errors import JobwireError
from jobwire.v1 import queue_service_pb2

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceStub

Request = queue_service_pb2.EnqueueJobRequest
Response = queue_service_pb2.EnqueueJobResponse
Outcome = EnqueueOutcome


def send(client: BaseClient, stub: QueueServiceStub, requests: Sequence[Request]) -> list[Outcome]:
    """Enqueues `requests` in as few calls as possible; one outcome per request, in order.

    The gateway refuses a batch as a whole when one entry is invalid; the
    entries of a refused batch are then sent alone, so each gets its own
    outcome (the request ids make a resend safe).
    """
    outcomes: list[Outcome] = []
    for batch in batches(requests, Request.ByteSize):
        outcomes.extend(_send_batch(client, stub, batch))
    return outcomes


def _send_batch(client: BaseClient, stub: QueueServiceStub, batch: list[Request]) -> list[Outcome]:
    timeout, metadata = client._timeout, client._metadata
    try:
        if len(batch) == 1:
            return [stub.EnqueueJob(batch[0], timeout=timeout, metadata=metadata)]
        response = stub.EnqueueJobs(
            queue_service_pb2.EnqueueJobsRequest(requests=batch),
            timeout=timeout,
            metadata=metadata,
        )
        return list(client._enqueue_results(len(batch), response))
    except grpc.RpcError as error:
        mapped = client._enqueue_error(error, len(batch))
        if mapped is None:
            return [
                outcome for request in batch for outcome in _send_batch(client, stub, [request])
            ]
        return [mapped] * len(batch)
    except JobwireError as error:
        return [error] * len(batch)
