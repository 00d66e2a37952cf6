"""The opt-in pipelined producer of the asyncio client: `AsyncClient.pipeline()`.

The twin of `Client.pipeline()` (`_pipeline.py`), with the same rules
(`_pipeline_base`): `enqueue` is a plain call that returns an awaitable
`AsyncPendingJob` at once; a task on the client's loop sends everything
queued since its previous call in one `EnqueueJobs` call, one call in flight
at a time, so the jobs enqueued in one loop iteration leave together on the
next. Nothing fails silently: a refused job fails its own handle, and
`flush()` and `aclose()` raise `EnqueueFailedError` with the failures since
the previous report.

A plain call cannot wait for room, so where the blocking `enqueue` waits,
this one raises `PipelineFullError` once `max_pending` jobs are unanswered;
`await pipe.wait_for_room()` first (it returns at once while there is room),
as `await writer.drain()` goes with `writer.write()` in asyncio's streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from jobwire.client._base import BaseClient, EnqueueOutcome
from jobwire.client._coalescer import send
from jobwire.client._errors import JobwireError
from jobwire.client._models import Job
from jobwire.client._pipeline_base import BasePendingJob, PipelineBase
from jobwire.v1 import queue_service_pb2

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub

_CANCELLED = "enqueue abandoned: the pipeline's sender task was cancelled (is the loop closing?)"


class AsyncPendingJob(BasePendingJob):
    """The handle of a pipelined enqueue: await it for the stored `Job`, or its error."""

    __slots__ = ("_answered",)

    def __init__(self, request: queue_service_pb2.EnqueueJobRequest) -> None:
        super().__init__(request)
        # Made only when someone awaits the handle: most handles are never awaited.
        self._answered: asyncio.Event | None = None

    def result(self) -> Job:
        """The stored job, or raises its error, without waiting.

        Raises:
            asyncio.InvalidStateError: The job is not answered yet; await the handle.
        """
        self._check_done()
        return self._outcome()

    def exception(self) -> JobwireError | None:
        """The error, or None when the job was stored, without waiting.

        Raises:
            asyncio.InvalidStateError: The job is not answered yet; await the handle.
        """
        self._check_done()
        return self._error

    def __await__(self) -> Generator[Any, None, Job]:
        if not self._done:
            if self._answered is None:
                self._answered = asyncio.Event()
            yield from self._answered.wait().__await__()
        return self._outcome()

    def _wake(self) -> None:
        if self._answered is not None:
            self._answered.set()

    def _check_done(self) -> None:
        if not self._done:
            raise asyncio.InvalidStateError(
                f"pipelined enqueue of {self.request.type} not answered yet; await the handle"
            )


class AsyncPipeline(PipelineBase[AsyncPendingJob]):
    """Pipelined enqueues on one `AsyncClient` (see `AsyncClient.pipeline`)."""

    def __init__(
        self,
        client: BaseClient,
        stub: QueueServiceAsyncStub,
        loop: asyncio.AbstractEventLoop,
        *,
        max_pending: int,
    ) -> None:
        super().__init__(client, max_pending=max_pending)
        self._stub = stub
        self._loop = loop
        self._sender: asyncio.Task[None] | None = None
        self._all_answered = asyncio.Event()
        self._all_answered.set()
        self._room = asyncio.Event()
        self._room.set()

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> AsyncPendingJob:
        """Queues a job and returns its handle at once; takes `AsyncClient.enqueue`'s arguments.

        Not a coroutine: the job leaves on the loop's next iteration (or when
        the call in flight returns), with the others enqueued meanwhile.

        Raises:
            PipelineFullError: `max_pending` jobs are unanswered; `await
                wait_for_room()` before enqueueing more.
            RuntimeError: The pipeline (or its client) is closed, or this is not
                the client's event loop.
            InvalidArgumentError: The serializer cannot encode the payload.
        """
        self._check_open()
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("an AsyncPipeline belongs to its AsyncClient's event loop")
        if not self._has_room():
            raise self._full_error()
        handle = AsyncPendingJob(self._build(type, payload, options))
        self._admit(handle)
        self._all_answered.clear()
        if not self._has_room():
            self._room.clear()
        if self._sender is None:
            self._sender = self._loop.create_task(self._send_queued(), name="jobwire-pipeline")
            self._sender.add_done_callback(self._sender_done)
        return handle

    async def wait_for_room(self) -> None:
        """Returns once `enqueue` can take a job: fewer than `max_pending` are unanswered."""
        await self._room.wait()

    async def flush(self, timeout: float | None = None) -> None:  # noqa: ASYNC109  # as Pipeline.flush
        """Waits until every job enqueued so far is answered.

        Raises:
            EnqueueFailedError: Jobs failed since the previous `flush` or
                `aclose`; each failure is reported by one of them only.
            TimeoutError: Jobs are still unanswered after `timeout` seconds
                (they stay queued and are still sent).
        """
        try:
            async with asyncio.timeout(timeout):
                await self._all_answered.wait()
        except TimeoutError:
            raise self._still_unanswered() from None
        self._report()

    async def aclose(self, timeout: float | None = None) -> None:  # noqa: ASYNC109  # as Pipeline.close
        """Flushes, then closes the pipeline; raises what `flush` raises."""
        try:
            await self.flush(timeout)
        finally:
            self._closed = True

    async def _send_queued(self) -> None:
        """Sends the queued jobs, one call at a time, until none are left."""
        try:
            while self._queued:
                batch = self._next_batch()
                try:
                    outcomes = await send(self._client, self._stub, [h.request for h in batch])
                except asyncio.CancelledError as cancelled:
                    # The loop is going away: fail every handle, leave none hanging.
                    batch, self._queued = batch + self._queued, []
                    self._settle(batch, self._send_failed(cancelled, len(batch), _CANCELLED))
                    raise
                except Exception as error:  # never leave a handle unanswered
                    outcomes = self._send_failed(error, len(batch))
                self._settle(batch, outcomes)
        finally:
            self._sender = None

    def _sender_done(self, sender: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs its body (the loop
        # closing): the jobs it was to send must still be answered.
        if sender is self._sender:
            self._sender = None
            batch, self._queued = self._queued, []
            if batch:
                error = asyncio.CancelledError()
                self._settle(batch, self._send_failed(error, len(batch), _CANCELLED))

    def _settle(self, batch: list[AsyncPendingJob], outcomes: Sequence[EnqueueOutcome]) -> None:
        self._answered(batch, self._answer(batch, outcomes))
        if self._has_room():
            self._room.set()
        if self._unanswered == 0:
            self._all_answered.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
