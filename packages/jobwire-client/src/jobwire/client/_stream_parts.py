"""What the enqueue stream (`_enqueue_stream`) keeps track of: callers, frames, streams.

And the backoff between the attempts of a frame, as gRPC's retry policy
computes it for unary calls (`RetryConfig`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import random

import grpc

from jobwire.client._base import EnqueueOutcome
from jobwire.client._config import RetryConfig
from jobwire.client._errors import JobwireError
from jobwire.v1 import queue_service_pb2

Request = queue_service_pb2.EnqueueJobRequest
Response = queue_service_pb2.EnqueueJobResponse
#: Where a caller waits for its answer: a task's future, or a thread's.
Waiter = asyncio.Future[Response] | concurrent.futures.Future[Response]


class Item:
    """One caller's enqueue, until it is answered."""

    __slots__ = ("attempts", "deadline", "error", "request", "solo", "waiter")

    def __init__(self, request: Request, waiter: Waiter, deadline: float) -> None:
        self.request = request
        self.waiter = waiter
        self.deadline = deadline
        self.attempts = 0
        self.solo = False  # sent alone, for an outcome of its own
        self.error: JobwireError | None = None  # why the last attempt failed

    def settle(self, outcome: EnqueueOutcome) -> None:
        """Hands the caller its answer (a caller no longer waiting gets none)."""
        waiter = self.waiter
        if not waiter.done():
            if isinstance(outcome, JobwireError):
                waiter.set_exception(outcome)
            else:
                waiter.set_result(outcome)


class Frame:
    __slots__ = ("id", "items", "timer")

    def __init__(self, frame_id: int, items: list[Item]) -> None:
        self.id = frame_id
        self.items = items
        self.timer: asyncio.TimerHandle | None = None


class Stream:
    """One `EnqueueStream` call: its unanswered frames, writer and reader."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[
            queue_service_pb2.EnqueueStreamRequest, queue_service_pb2.EnqueueStreamResponse
        ],
    ) -> None:
        self.call = call
        self.frames: dict[int, Frame] = {}
        self.outbox: asyncio.Queue[Frame | None] = asyncio.Queue()
        self.writable = True
        self.opened = asyncio.Event()  # the gateway's `opened` notice came
        self.tasks: list[asyncio.Task[None]] = []


def backoff(retry: RetryConfig, attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: random, bounded."""
    bound = min(
        retry.initial_backoff.total_seconds() * retry.multiplier ** (attempts - 1),
        retry.max_backoff.total_seconds(),
    )
    return random.uniform(0, bound)
