"""``EnqueueStream``: enqueue frames over one long-lived stream per producer.

A frame is stored the way the unary calls store their jobs (the servicer's
``store``, one rule for all three), each frame as its own task so that a
slow store does not hold up the frames read after it: answers may leave out
of order, each carrying its frame's id. A frame the gateway refuses is
answered with the error the unary call would have ended with; the stream
goes on. The RPC's generator is the only writer: it yields the ``opened``
notice, then what the frames' tasks put in an outbox.

Shutting down, the gateway sends a ``draining`` notice on every stream and
refuses new ones; a stream then ends with OK once the client half-closes (or
``DRAIN_LINGER`` seconds passed) and every frame read is answered, so the
client's next frames go to a new stream, elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Sequence
from typing import Protocol

import grpc

from jobwire.gateway._errors import ERROR_DOMAIN, GatewayError, UnavailableError
from jobwire.gateway.servicers._rpc import INTERNAL_MESSAGE, Context
from jobwire.v1 import queue_service_pb2

logger = logging.getLogger("jobwire.gateway")

Request = queue_service_pb2.EnqueueStreamRequest
Response = queue_service_pb2.EnqueueStreamResponse


class Store(Protocol):
    """Stores jobs into an answer's results, or raises as the unary calls do.

    ``QueueServicer.store``.
    """

    def __call__(
        self,
        requests: Sequence[queue_service_pb2.EnqueueJobRequest],
        into: queue_service_pb2.EnqueueJobsResponse,
        *,
        batch: bool,
    ) -> Awaitable[None]: ...


#: Frames read and not yet answered on one stream before it stops reading
#: (HTTP/2 flow control then holds the producer back).
MAX_UNANSWERED = 64
#: Seconds a draining stream waits for the client to half-close before it ends.
DRAIN_LINGER = 5.0


def refusal(error: Exception, peer: str) -> queue_service_pb2.EnqueueStreamError:
    """The answer to a refused frame: the status a unary call would have ended with."""
    if not isinstance(error, GatewayError):
        logger.error("unexpected error in %s", peer, exc_info=error)
        return queue_service_pb2.EnqueueStreamError(
            code=grpc.StatusCode.INTERNAL.value[0],
            message=INTERNAL_MESSAGE,
            reason="INTERNAL",
            domain=ERROR_DOMAIN,
        )
    return queue_service_pb2.EnqueueStreamError(
        code=error.code.value[0],
        message=error.message,
        reason=error.reason,
        domain=ERROR_DOMAIN,
        metadata=dict(error.metadata),
    )


class EnqueueStreams:
    """The gateway's open enqueue streams: serves each one, drains them all.

    Args:
        store: Stores one frame's jobs (``QueueServicer.store``).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._open: set[_Stream] = set()
        self._closed = asyncio.Event()
        self._closed.set()
        self._draining = False

    @property
    def open(self) -> int:
        """Enqueue streams open now."""
        return len(self._open)

    async def serve(self, context: Context) -> AsyncGenerator[Response, None]:
        """Yield one stream's answers until it ends; raises what ends it with an error."""
        if self._draining:
            raise UnavailableError("the gateway is shutting down; reconnect to another one")
        stream = _Stream(context, self._store)
        self._open.add(stream)
        self._closed.clear()
        try:
            async for response in stream.run():
                yield response
        finally:
            self._open.discard(stream)
            if not self._open:
                self._closed.set()

    def drain(self, linger: float = DRAIN_LINGER) -> None:
        """Tell every stream the gateway is going; refuse new ones."""
        self._draining = True
        for stream in self._open:
            stream.drain(linger)

    async def wait_closed(self, grace: float) -> bool:
        """Wait until no stream is open; False if ``grace`` seconds passed first."""
        try:
            async with asyncio.timeout(grace):
                await self._closed.wait()
        except TimeoutError:
            return False
        return True


class _Stream:
    """One enqueue stream: a reader, a task per frame, and the outbox they answer into."""

    def __init__(self, context: Context, store: Store) -> None:
        self._context = context
        self._store = store
        self._outbox: asyncio.Queue[Response | None] = asyncio.Queue()
        self._frames: set[asyncio.Task[None]] = set()
        # Frames read whose answer the generator has not yielded yet.
        self._unanswered = 0
        self._room = asyncio.Event()
        self._room.set()
        self._reader: asyncio.Task[None] | None = None
        self._read_all = False
        self._notice: Response | None = None
        self.error: Exception | None = None

    async def run(self) -> AsyncGenerator[Response, None]:
        self._reader = asyncio.create_task(self._read())
        try:
            yield Response(opened=True)
            while (response := await self._outbox.get()) is not None:
                if response is not self._notice:
                    self._unanswered -= 1
                    self._room.set()
                yield response
                self._maybe_end()
        finally:
            self._reader.cancel()
            for frame in self._frames:
                frame.cancel()
            await asyncio.gather(self._reader, *self._frames, return_exceptions=True)
        if self.error is not None:
            raise self.error

    def drain(self, linger: float) -> None:
        if self._notice is not None:
            return
        self._notice = Response(draining=True)
        self._outbox.put_nowait(self._notice)
        asyncio.get_running_loop().call_later(linger, self._stop_reading)

    def _stop_reading(self) -> None:
        if self._reader is not None and not self._read_all:
            self._reader.cancel()
            self._read_all = True
            self._maybe_end()

    async def _read(self) -> None:
        context = self._context
        try:
            while True:
                while self._unanswered >= MAX_UNANSWERED:
                    self._room.clear()
                    await self._room.wait()
                request = await context.read()
                if request is grpc.aio.EOF:
                    break
                self._unanswered += 1
                frame = asyncio.create_task(self._answer(request))
                self._frames.add(frame)
                frame.add_done_callback(self._frames.discard)
        except Exception as error:  # a malformed frame: the whole stream is at fault
            self.error = error
            self._outbox.put_nowait(None)
            return
        self._read_all = True
        self._maybe_end()

    async def _answer(self, request: Request) -> None:
        response = Response(frame_id=request.frame_id)
        try:
            # A frame of one job is stored as `EnqueueJob` stores it, several as `EnqueueJobs`.
            jobs = request.requests
            await self._store(jobs, response.enqueued, batch=len(jobs) != 1)
        except Exception as error:
            response.error.CopyFrom(refusal(error, self._context.peer()))
        self._outbox.put_nowait(response)

    def _maybe_end(self) -> None:
        """Ends the stream once the client sends no more frames and each read is answered."""
        if self._read_all and self._unanswered == 0:
            self._outbox.put_nowait(None)
