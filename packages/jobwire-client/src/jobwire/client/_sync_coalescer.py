"""Coalescing the blocking `Client`'s concurrent enqueues from many threads.

`AsyncClient` sends the enqueues of one loop iteration in one call; threads
have no loop iteration, so `Client` uses group commit: a thread whose enqueue
finds no call in flight sends at once (alone, as a unary `EnqueueJob`: one
thread in a loop pays nothing extra), and the enqueues that arrive while a
call is in flight wait for it and then leave together in one `EnqueueJobs`
call, sent by the first of them. Each caller still returns only once its own
job is stored, or raises its own error: what `enqueue` promises is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
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


class _Slot:
    __slots__ = ("outcome", "request", "wake")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.outcome: Outcome | None = None
        self.wake = threading.Event()


class ThreadCoalescer:
    """Group commit of concurrent `Client.enqueue` calls (see the module docstring)."""

    def __init__(self, client: BaseClient, stub: Callable[[], QueueServiceStub]) -> None:
        self._client = client
        self._stub = stub
        self._lock = threading.Lock()
        self._waiting: list[_Slot] = []
        self._sending = False

    def enqueue(self, request: Request) -> Response:
        """Stores one job, in a call shared with the other threads enqueueing now."""
        slot = _Slot(request)
        with self._lock:
            self._waiting.append(slot)
        while True:
            with self._lock:
                if slot.outcome is not None:
                    break
                if self._sending:
                    slot.wake.clear()
                    batch = None
                else:
                    self._sending = True
                    batch, self._waiting = self._waiting, []
            if batch is None:
                slot.wake.wait()
                continue
            self._lead(batch)
        if isinstance(slot.outcome, JobwireError):
            raise slot.outcome
        return slot.outcome

    def _lead(self, batch: list[_Slot]) -> None:
        """Sends `batch` for its threads, then wakes the first of the next ones to send."""
        try:
            outcomes = send(self._client, self._stub(), [slot.request for slot in batch])
        except BaseException as error:  # KeyboardInterrupt: the others must not hang
            failed = JobwireError(f"enqueue interrupted: {error!r}")
            outcomes = [failed] * len(batch)
            raise
        finally:
            for slot, outcome in zip(batch, outcomes, strict=True):
                slot.outcome = outcome
                slot.wake.set()
            with self._lock:
                self._sending = False
                following = self._waiting[0] if self._waiting else None
            if following is not None:
                following.wake.set()
