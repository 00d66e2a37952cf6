"""The opt-in pipelined producer: `Client.pipeline()`.

`enqueue` returns a `PendingJob` at once; a sender thread takes everything
queued since its last call and sends it in one `EnqueueJobs` call, so one
producer thread calling `enqueue` once per job is not bound by a round trip
per job. The contract is the Kafka producer's: nothing fails silently. A job
the gateway refuses fails its own handle (the others of its batch are stored;
see `_sync_coalescer.send`), and every failure is raised once more, together
with the others since the previous report, by `flush()` or `close()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from jobwire.client._base import MAX_BATCH, BaseClient
from jobwire.client._errors import JobwireError
from jobwire.client._models import Job
from jobwire.client._sync_coalescer import Request, Response, send

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceStub


class EnqueueFailedError(JobwireError):
    """Pipelined enqueues failed; `failures` holds their handles, each with its own error."""

    def __init__(self, failures: list[PendingJob]) -> None:
        first = failures[0].exception()
        super().__init__(
            f"{len(failures)} pipelined enqueue(s) failed; the first: {first}",
            code=getattr(first, "code", None),
        )
        #: The handles of the failed enqueues, in the order they were made.
        self.failures = failures


class PendingJob:
    """The handle of a pipelined enqueue: the stored `Job`, or why it was refused."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self._future: Future[Job] = Future()

    def done(self) -> bool:
        """Whether the gateway answered (or the send failed)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> Job:
        """Waits for the answer and returns the stored job, or raises its error."""
        return self._future.result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Waits for the answer; the error, or None when the job was stored."""
        return self._future.exception(timeout)

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("failed" if self.exception() else "stored")
        return f"<PendingJob {self.request.type} {state}>"


class Pipeline:
    """Pipelined enqueues on one `Client` (see `Client.pipeline`)."""

    def __init__(
        self,
        client: BaseClient,
        stub: QueueServiceStub,
        build: Callable[..., Request],
        stored: Callable[[Request, Response], Job],
    ) -> None:
        self._client = client
        self._stub = stub
        self._build = build
        self._stored = stored
        self._lock = threading.Condition()
        self._queued: list[PendingJob] = []
        self._unanswered = 0
        self._failed: list[PendingJob] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="jobwire-pipeline", daemon=True)
        self._thread.start()

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> PendingJob:
        """Queues a job and returns its handle at once; takes `Client.enqueue`'s arguments.

        A payload the serializer cannot encode raises here, as in `Client.enqueue`.
        """
        handle = PendingJob(self._build(type, payload, **options))
        with self._lock:
            if self._closed:
                raise RuntimeError("the pipeline is closed")
            self._queued.append(handle)
            self._unanswered += 1
            self._lock.notify_all()
        return handle

    def flush(self, timeout: float | None = None) -> None:
        """Waits until every job enqueued so far is answered.

        Raises:
            EnqueueFailedError: Jobs failed since the previous `flush` or
                `close`; each failure is reported by one of them only.
            TimeoutError: Jobs are still unanswered after `timeout` seconds.
        """
        with self._lock:
            if not self._lock.wait_for(lambda: self._unanswered == 0, timeout):
                raise TimeoutError(f"{self._unanswered} pipelined enqueues still unanswered")
            failed, self._failed = self._failed, []
        if failed:
            raise EnqueueFailedError(failed)

    def close(self, timeout: float | None = None) -> None:
        """Flushes, then stops the sender thread; raises what `flush` raises."""
        try:
            self.flush(timeout)
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify_all()
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._lock:
                self._lock.wait_for(lambda: self._queued or self._closed)
                if not self._queued:
                    return  # closed, and everything sent
                batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
            try:
                outcomes = send(self._client, self._stub, [h.request for h in batch])
            except BaseException as error:  # never leave a handle unanswered
                outcomes = [JobwireError(f"enqueue failed: {error!r}")] * len(batch)
            failed = []
            for handle, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, JobwireError):
                    handle._future.set_exception(outcome)
                    failed.append(handle)
                else:
                    handle._future.set_result(self._stored(handle.request, outcome))
            with self._lock:
                self._failed.extend(failed)
                self._unanswered -= len(batch)
                self._lock.notify_all()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
