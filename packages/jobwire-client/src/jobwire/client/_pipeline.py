"""The opt-in pipelined producer: `Client.pipeline()`.

`enqueue` returns a `PendingJob` at once; a sender thread takes everything
queued since its last call and sends it in one `EnqueueJobs` call, so one
producer thread calling `enqueue` once per job is not bound by a round trip
per job. The contract is the Kafka producer's: nothing fails silently. A job
the gateway refuses fails its own handle (the others of its batch are stored;
see `_sync_coalescer.send`), and every failure is raised once more, together
with the others since the previous report, by `flush()` or `close()`.
At most `max_pending` jobs are unanswered: `enqueue` blocks until there is
room (as the Java Kafka producer's `send` does when its buffer is full). The
rules shared with `AsyncPipeline` live in `_pipeline_base`.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from jobwire.client._base import BaseClient
from jobwire.client._errors import JobwireError
from jobwire.client._models import Job
from jobwire.client._pipeline_base import BasePendingJob, PipelineBase
from jobwire.client._sync_coalescer import Request, send

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceStub


class PendingJob(BasePendingJob):
    """The handle of a pipelined enqueue: the stored `Job`, or why it was refused."""

    __slots__ = ("_answers",)

    def __init__(self, request: Request, answers: threading.Condition) -> None:
        super().__init__(request)
        self._answers = answers  # the pipeline's: notified when a batch is answered

    def result(self, timeout: float | None = None) -> Job:
        """Waits for the answer and returns the stored job, or raises its error.

        Raises:
            TimeoutError: No answer within `timeout` seconds.
        """
        self._wait(timeout)
        return self._outcome()

    def exception(self, timeout: float | None = None) -> JobwireError | None:
        """Waits for the answer; the error, or None when the job was stored."""
        self._wait(timeout)
        return self._error

    def _wait(self, timeout: float | None) -> None:
        if self._done:
            return
        with self._answers:
            if not self._answers.wait_for(self.done, timeout):
                raise TimeoutError(f"pipelined enqueue of {self.request.type} still unanswered")


class Pipeline(PipelineBase[PendingJob]):
    """Pipelined enqueues on one `Client` (see `Client.pipeline`)."""

    def __init__(self, client: BaseClient, stub: QueueServiceStub, *, max_pending: int) -> None:
        super().__init__(client, max_pending=max_pending)
        self._stub = stub
        self._lock = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="jobwire-pipeline", daemon=True)
        self._thread.start()

    def enqueue(self, type: str, payload: Any = None, **options: Any) -> PendingJob:
        """Queues a job and returns its handle at once; takes `Client.enqueue`'s arguments.

        Blocks while `max_pending` jobs are unanswered. A payload the serializer
        cannot encode raises here, as in `Client.enqueue`.

        Raises:
            RuntimeError: The pipeline (or its client) is closed.
        """
        request = self._build(type, payload, options)
        with self._lock:
            self._lock.wait_for(lambda: self._closed or self._has_room())
            self._check_open()
            handle = PendingJob(request, self._lock)
            self._admit(handle)
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
                raise self._still_unanswered()
            self._report()

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
                batch = self._next_batch()
            try:
                outcomes = send(self._client, self._stub, [h.request for h in batch])
            except BaseException as error:  # never leave a handle unanswered
                outcomes = self._send_failed(error, len(batch))
            failed = self._answer(batch, outcomes)
            with self._lock:
                self._answered(batch, failed)
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
