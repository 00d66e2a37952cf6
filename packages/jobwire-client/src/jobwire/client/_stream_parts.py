"""What the enqueue stream (`_enqueue_stream`) keeps track of: callers, frames, streams.

And the backoff between the attempts of a frame, as gRPC's retry policy
computes it for unary calls (`RetryConfig`).
"""

from __future__ import annotations

import asyncio
import random
import threading

import grpc

from jobwire.client._base import EnqueueOutcome
from jobwire.client._config import RetryConfig
from jobwire.client._errors import JobwireError
from jobwire.v1 import queue_service_pb2

Request = queue_service_pb2.EnqueueJobRequest
Response = queue_service_pb2.EnqueueJobResponse


class ThreadAnswer:
    """Where a thread of `Client` waits for its enqueue's answer.

    A lock the loop thread releases: one wake-up, where a
    `concurrent.futures.Future` takes a condition and notifies its waiters
    (with 16 threads enqueueing, that was a fifth of the loop thread's time).
    """

    __slots__ = ("_answered", "_done", "_error", "_response")

    def __init__(self) -> None:
        self._answered = threading.Lock()
        self._answered.acquire()
        self._done = False
        self._response: Response | None = None
        self._error: JobwireError | None = None

    def done(self) -> bool:
        return self._done

    def set_result(self, response: Response) -> None:
        self._response = response
        self._done = True
        self._answered.release()

    def set_exception(self, error: JobwireError) -> None:
        self._error = error
        self._done = True
        self._answered.release()

    def wait(self, timeout: float) -> Response | None:
        """The response, or raises the error; None if `timeout` seconds passed first."""
        if not self._answered.acquire(timeout=timeout):
            return None
        if self._error is not None:
            raise self._error
        return self._response


#: Where a caller waits for its answer: a task's future, or a thread's lock.
Waiter = asyncio.Future[Response] | ThreadAnswer


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
