"""`enqueue` over one persistent `EnqueueStream`: what both clients' `enqueue` sends through.

A unary call costs a round trip with call setup (~0.85 ms here); a frame on
an open stream about half that, so a producer that enqueues one job at a
time and waits for each answer (what `enqueue` promises) goes twice as fast.
`StreamEnqueuer` runs on an event loop: the `AsyncClient`'s, or for `Client`
a private loop in a daemon thread (`_sync_stream`), so the sync client also
works inside a notebook's running loop. Both twins therefore share it all:
frames, answers, retries and the mapping of errors.

* **Group commit.** At most `MAX_FRAMES_IN_FLIGHT` frames are unanswered on
  the stream; the enqueues that arrive meanwhile (threads of `Client`, tasks
  of `AsyncClient`) leave together in the next frame. One caller alone pays
  one frame per job and waits for nothing else.
* **Each caller its own outcome.** A frame the gateway refuses as a whole
  for one entry (INVALID_ARGUMENT, FAILED_PRECONDITION) is sent again job by
  job, so only the bad job's caller fails, with the error the unary call
  would have given it.
* **Retried only where safe.** Every job carries a request id, and the
  gateway returns the job a request id already created, so a frame whose
  answer was lost (the stream broke, the gateway answered UNAVAILABLE) is
  sent again on a new stream, at most `RetryConfig.max_attempts` times in
  all, with its backoff, within the call's timeout; after that its callers
  get the error. Errors that a retry cannot mend fail at once.
* **A gateway shutting down** sends a `draining` notice: the stream is
  half-closed after its frames (their answers still come) and the next frame
  opens a new stream, on another gateway behind the same address.
* **Older gateways** answer the stream UNIMPLEMENTED: the client then sends
  `EnqueueJob`/`EnqueueJobs` calls (`_coalescer.send`) for good; a gateway
  out of stream slots (`max_streams`) gets unary calls for `STREAM_PAUSE` s,
  and the frames of a stream that failed on a message over the gateway's
  limit go again as unary calls, so only the oversized job fails.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import grpc

from jobwire.client import _coalescer
from jobwire.client._base import MAX_BATCH, MAX_BATCH_BYTES, BaseClient, EnqueueOutcome
from jobwire.client._config import RetryConfig
from jobwire.client._errors import (
    DeadlineExceededError,
    InternalError,
    JobwireError,
    StatusCode,
    from_stream_error,
)
from jobwire.client._stream_parts import Frame, Item, Request, Stream, Waiter, backoff
from jobwire.v1 import queue_service_pb2

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub

#: Frames unanswered on the stream at once; later enqueues wait and leave together.
MAX_FRAMES_IN_FLIGHT = 2
#: Seconds of unary calls after the gateway refused a stream for its `max_streams`.
STREAM_PAUSE = 5.0
#: Seconds `aclose` waits for the gateway to end a half-closed stream.
CLOSE_WAIT = 5.0
#: Stream failures a new stream may mend: the gateway went away or ended it.
_RETRIED_STREAM_CODES = frozenset(
    {StatusCode.UNAVAILABLE, StatusCode.CANCELLED, StatusCode.UNKNOWN, StatusCode.OK}
)


class StreamEnqueuer:
    """Enqueues over one persistent stream, opened on first use and again after a failure.

    Every method runs on `loop`; `Client` calls `submit` through
    `loop.call_soon_threadsafe`.
    """

    def __init__(
        self,
        client: BaseClient,
        stub: QueueServiceAsyncStub,
        loop: asyncio.AbstractEventLoop,
        retry: RetryConfig,
    ) -> None:
        self._client = client
        self._stub = stub
        self._loop = loop
        self._retry = retry
        self._pending: deque[Item] = deque()
        self._flush_soon = False
        self._stream: Stream | None = None
        self._streams: set[Stream] = set()
        self._frame_ids = itertools.count(1)
        self._unary_for_good = False
        self._unary_until = 0.0
        self._unary_calls = 0
        self._unsettled = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, request: Request, waiter: Waiter) -> None:
        """Sends `request` in the next frame; `waiter` gets its response or its error."""
        self._unsettled += 1
        self._idle.clear()
        self._pending.append(Item(request, waiter, self._loop.time() + self._client._timeout))
        if not self._flush_soon:
            # On the next iteration, with whatever else arrives meanwhile.
            self._flush_soon = True
            self._loop.call_soon(self._flush)

    async def aclose(self) -> None:
        """Waits until every enqueue is answered, then ends the streams."""
        self._flush()
        await self._idle.wait()
        for stream in list(self._streams):
            self._retire(stream)
        tasks = [task for stream in self._streams for task in stream.tasks]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=CLOSE_WAIT)
            for stream in list(self._streams):
                stream.call.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # Sending ---------------------------------------------------------------

    def _flush(self) -> None:
        """Sends what is pending, as far as the frames in flight allow."""
        self._flush_soon = False
        while self._pending:
            if self._unary_for_good or self._loop.time() < self._unary_until:
                if self._unary_calls >= MAX_FRAMES_IN_FLIGHT:
                    return
                items = self._take()
                if items:
                    self._unary(items)
                continue
            stream = self._stream or self._open()
            if len(stream.frames) >= MAX_FRAMES_IN_FLIGHT:
                return
            items = self._take()
            if items:
                frame = Frame(next(self._frame_ids), items)
                stream.frames[frame.id] = frame
                deadline = min(item.deadline for item in items)
                frame.timer = self._loop.call_at(deadline, self._expire, stream, frame)
                stream.outbox.put_nowait(frame)

    def _take(self) -> list[Item]:
        """The items of the next frame, skipping the abandoned and the expired."""
        items: list[Item] = []
        size = 0
        now = self._loop.time()
        while self._pending:
            item = self._pending[0]
            if item.waiter.done():  # a cancelled task gets no job enqueued
                self._pending.popleft()
                self._settled()
                continue
            if now >= item.deadline:
                self._pending.popleft()
                self._settle(item, item.error or self._deadline_error())
                continue
            item_bytes = item.request.ByteSize()
            # Alone if it must be; else within the limits of one EnqueueJobs batch.
            if items and (
                item.solo
                or items[0].solo
                or len(items) == MAX_BATCH
                or size + item_bytes > MAX_BATCH_BYTES
            ):
                break
            self._pending.popleft()
            items.append(item)
            size += item_bytes
        return items

    def _open(self) -> Stream:
        call = self._stub.EnqueueStream(metadata=self._client._metadata)
        stream = Stream(call)
        self._stream = stream
        self._streams.add(stream)
        stream.tasks = [
            self._loop.create_task(self._write(stream)),
            self._loop.create_task(self._read(stream)),
        ]
        return stream

    async def _write(self, stream: Stream) -> None:
        call = stream.call
        try:
            # A frame written to a stream refused on arrival can turn the refusal
            # (UNIMPLEMENTED, max_streams) into INTERNAL (grpc/grpc#36066).
            await stream.opened.wait()
            while (frame := await stream.outbox.get()) is not None:
                request = queue_service_pb2.EnqueueStreamRequest(
                    frame_id=frame.id, requests=[item.request for item in frame.items]
                )
                await call.write(request)
            await call.done_writing()
        except (grpc.RpcError, asyncio.InvalidStateError):
            pass  # the stream ended: the reader learns why and answers its frames

    def _unary(self, items: list[Item]) -> None:
        """Sends `items` in unary calls, as few as the batch limits allow."""
        self._unary_calls += 1
        task = self._loop.create_task(self._send_unary(items))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_unary(self, items: list[Item]) -> None:
        try:
            outcomes = await _coalescer.send(self._client, self._stub, [i.request for i in items])
        except Exception as error:  # never leave a caller waiting
            failed = JobwireError(f"enqueue failed: {error!r}")
            failed.__cause__ = error
            outcomes = [failed] * len(items)
        finally:
            self._unary_calls -= 1
        for item, outcome in zip(items, outcomes, strict=True):
            self._settle(item, outcome)
        self._flush()

    # Answers ---------------------------------------------------------------

    async def _read(self, stream: Stream) -> None:
        call = stream.call
        failure: JobwireError | None = None
        try:
            while (response := await call.read()) is not grpc.aio.EOF:
                assert isinstance(response, queue_service_pb2.EnqueueStreamResponse)
                if response.opened:
                    stream.opened.set()
                if response.draining:
                    self._retire(stream)
                frame = stream.frames.pop(response.frame_id, None)
                if frame is not None:
                    if frame.timer is not None:
                        frame.timer.cancel()
                    self._answered(frame, response)
                    self._flush()
            code = await call.code()
            if code != grpc.StatusCode.OK:
                failure = JobwireError(await call.details(), code=StatusCode(code.value[0]))
        except grpc.RpcError as error:
            failure = self._client._error(error)
            failure.__cause__ = error
        except Exception as error:  # never leave a frame unanswered
            failure = JobwireError(f"the enqueue stream failed: {error!r}")
            failure.__cause__ = error
        self._ended(stream, failure)

    def _answered(self, frame: Frame, response: queue_service_pb2.EnqueueStreamResponse) -> None:
        outcome = response.WhichOneof("outcome")
        if outcome == "enqueued" and len(response.enqueued.results) == len(frame.items):
            for item, result in zip(frame.items, response.enqueued.results, strict=True):
                self._settle(item, result)
        elif outcome == "error":
            self._refused(frame.items, from_stream_error(response.error, address=self._address))
        else:
            got = len(response.enqueued.results) if outcome else "no"
            error = InternalError(
                f"the gateway answered {got} results for {len(frame.items)} enqueued jobs"
            )
            self._settle_all(frame.items, error)

    def _refused(self, items: list[Item], error: JobwireError) -> None:
        if len(items) > 1 and self._client._split_on(error):
            # The gateway refuses a batch as a whole; sent alone, each job gets
            # its own outcome and one bad caller does not fail the others.
            for item in reversed(items):
                item.solo = True
                self._pending.appendleft(item)
        elif error.code is StatusCode.UNAVAILABLE:
            self._again(items, error)
        else:
            self._settle_all(items, error)

    def _expire(self, stream: Stream, frame: Frame) -> None:
        """No answer by a caller's deadline: its callers fail; a late answer is ignored."""
        if stream.frames.pop(frame.id, None) is None:
            return
        for item in frame.items:
            if self._loop.time() >= item.deadline:
                self._settle(item, item.error or self._deadline_error())
            else:
                self._pending.appendleft(item)
        self._flush()

    # Streams that end ------------------------------------------------------

    def _retire(self, stream: Stream) -> None:
        """Sends nothing more on `stream`; its frames are still answered."""
        if stream.writable:
            stream.writable = False
            stream.outbox.put_nowait(None)
        if self._stream is stream:
            self._stream = None

    def _ended(self, stream: Stream, failure: JobwireError | None) -> None:
        """`stream` ended: its unanswered frames go again, or their callers fail."""
        self._retire(stream)
        self._streams.discard(stream)
        frames = list(stream.frames.values())
        stream.frames.clear()
        items = [item for frame in frames for item in frame.items]
        for frame in frames:
            if frame.timer is not None:
                frame.timer.cancel()
        code = StatusCode.OK if failure is None else failure.code
        if not items:
            pass
        elif code is StatusCode.UNIMPLEMENTED:
            self._unary_for_good = True  # an older gateway: it read no frame
            self._pending.extendleft(reversed(items))
        elif code is StatusCode.RESOURCE_EXHAUSTED and failure is not None:
            # Out of stream slots (the gateway's reason says so), or a frame over
            # its message limit, which fails the whole stream: one unary call a
            # job gives each its own outcome (the request ids make it safe).
            if failure.reason:
                self._unary_until = self._loop.time() + STREAM_PAUSE
                self._pending.extendleft(reversed(items))
            else:
                for item in items:
                    self._unary([item])
        elif failure is None:
            self._pending.extendleft(reversed(items))  # ended cleanly: these were never read
        elif code in _RETRIED_STREAM_CODES:
            self._again(items, failure)
        else:
            self._settle_all(items, failure)
        self._flush()

    def _again(self, items: list[Item], error: JobwireError) -> None:
        """Sends `items` again after a backoff, or fails those out of attempts or time."""
        retry = self._retry
        now = self._loop.time()
        again = []
        for item in items:
            item.attempts += 1
            item.error = error
            if item.attempts >= retry.max_attempts or now >= item.deadline:
                self._settle(item, error)
            else:
                again.append(item)
        if again:
            delay = backoff(retry, max(item.attempts for item in again))
            self._loop.call_later(delay, self._resend, again)

    def _resend(self, items: Iterable[Item]) -> None:
        self._pending.extendleft(reversed(list(items)))
        self._flush()

    # Callers ---------------------------------------------------------------

    def _settle(self, item: Item, outcome: EnqueueOutcome) -> None:
        item.settle(outcome)
        self._settled()

    def _settle_all(self, items: Sequence[Item], error: JobwireError) -> None:
        for item in items:
            self._settle(item, error)

    def _settled(self) -> None:
        self._unsettled -= 1
        if not self._unsettled:
            self._idle.set()

    def _deadline_error(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"the gateway at {self._address} did not answer within {self._client._timeout:g} s"
        )

    @property
    def _address(self) -> str:
        return self._client.address
