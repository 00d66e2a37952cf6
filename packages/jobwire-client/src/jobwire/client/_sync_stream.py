"""The blocking `Client`'s enqueue stream: a `StreamEnqueuer` on a private loop thread.

`Client` makes blocking calls on a plain gRPC channel and needs no event
loop, so it works anywhere, inside a notebook's running loop too. Its
enqueues go over `EnqueueStream` (`_enqueue_stream`), which lives on an event
loop: this one runs in a daemon thread the client starts on its first
enqueue, with a grpc.aio channel of its own. A thread hands its request to
the loop and waits for its own answer; the requests of threads that enqueue
while a frame is in flight leave together in the next frame.
"""

from __future__ import annotations

import asyncio
import threading

from jobwire.client._base import BaseClient
from jobwire.client._enqueue_stream import CLOSE_WAIT, StreamEnqueuer
from jobwire.client._errors import DeadlineExceededError
from jobwire.client._stream_parts import Request, Response, ThreadAnswer
from jobwire.v1 import queue_service_pb2_grpc

#: Seconds a caller waits beyond the client's timeout before it stops trusting the
#: loop thread to answer (which answers every enqueue by its deadline).
_SAFETY_MARGIN = 30.0


class SyncEnqueuer:
    """Runs the enqueue stream of a `Client` on a loop thread, started on first use."""

    def __init__(self, client: BaseClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._enqueuer: StreamEnqueuer | None = None
        self._closed = False

    def enqueue(self, request: Request) -> Response:
        """Stores one job and returns the gateway's answer, or raises its error."""
        loop, enqueuer = self._running()
        answer = ThreadAnswer()
        loop.call_soon_threadsafe(enqueuer.submit, request, answer)
        response = answer.wait(self._client._timeout + _SAFETY_MARGIN)
        if response is None:
            raise DeadlineExceededError(
                f"no answer to an enqueue from the client's loop thread "
                f"within {self._client._timeout + _SAFETY_MARGIN:g} s"
            )
        return response

    def close(self) -> None:
        """Waits for the enqueues in flight to be answered, then stops the thread."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(
            self._client._timeout + CLOSE_WAIT + _SAFETY_MARGIN
        )
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    def _running(self) -> tuple[asyncio.AbstractEventLoop, StreamEnqueuer]:
        if self._enqueuer is not None and self._loop is not None:
            return self._loop, self._enqueuer
        with self._lock:
            if self._closed:
                raise RuntimeError("the Client is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="jobwire-enqueue", daemon=True
                )
                thread.start()
                # The channel belongs to the loop that uses it: opened on it.
                self._enqueuer = asyncio.run_coroutine_threadsafe(self._open(), loop).result()
                self._loop, self._thread = loop, thread
            assert self._enqueuer is not None
            return self._loop, self._enqueuer

    async def _open(self) -> StreamEnqueuer:
        client = self._client
        self._channel = client._aio_channel()
        stub = queue_service_pb2_grpc.QueueServiceStub(self._channel)
        return StreamEnqueuer(client, stub, asyncio.get_running_loop(), client._retry)

    async def _aclose(self) -> None:
        assert self._enqueuer is not None
        try:
            await self._enqueuer.aclose()
        finally:
            await self._channel.close()
