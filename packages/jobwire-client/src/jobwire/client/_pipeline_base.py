"""What the pipelined producers of `Client` and `AsyncClient` share.

The twins only do the I/O: `Pipeline` (`_pipeline.py`) sends from a thread,
`AsyncPipeline` (`_async_pipeline.py`) from a task on the client's loop. The
rules live here, once: building a job's request, the bound on jobs enqueued
and not yet answered, which jobs leave in the next call (everything queued
since the previous one, one call in flight at a time, so jobs are stored in
the order they were enqueued), settling each handle with its job or its own
error, and reporting every failure once (the Kafka producer's contract:
nothing fails silently).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from jobwire.client._base import MAX_BATCH, BaseClient, EnqueueOutcome
from jobwire.client._errors import JobwireError, StatusCode
from jobwire.client._models import Job
from jobwire.client._requests import JobRequest
from jobwire.v1 import queue_service_pb2

#: Most jobs a pipeline holds enqueued and not yet answered, by default.
DEFAULT_MAX_PENDING = 10_000


class EnqueueFailedError(JobwireError):
    """Pipelined enqueues failed; `failures` holds their handles, each with its own error."""

    def __init__(self, failures: Sequence[BasePendingJob]) -> None:
        first = failures[0]._error
        super().__init__(
            f"{len(failures)} pipelined enqueue(s) failed; the first: {first}",
            code=getattr(first, "code", None),
        )
        #: The handles of the failed enqueues (`PendingJob` or `AsyncPendingJob`),
        #: in the order they were made.
        self.failures = list(failures)


class PipelineFullError(JobwireError):
    """The pipeline holds `max_pending` unanswered jobs; wait for room, then enqueue."""

    code = StatusCode.RESOURCE_EXHAUSTED


class BasePendingJob:
    """The state of a pipelined enqueue's handle: unanswered, stored, or failed."""

    __slots__ = ("_done", "_error", "_job", "request")

    def __init__(self, request: queue_service_pb2.EnqueueJobRequest) -> None:
        #: The `EnqueueJobRequest` sent (its `request_id` makes a resend safe).
        self.request = request
        self._job: Job | None = None
        self._error: JobwireError | None = None
        self._done = False

    def done(self) -> bool:
        """Whether the gateway answered (or the send failed)."""
        return self._done

    def exception(self) -> JobwireError | None:
        """The error of an answered enqueue, or None when its job was stored."""
        return self._error

    def _settle(self, outcome: Job | JobwireError) -> None:
        if isinstance(outcome, JobwireError):
            self._error = outcome
        else:
            self._job = outcome
        self._done = True
        self._wake()

    def _wake(self) -> None:
        """Tells whoever waits for this handle that it is answered (the twins' part)."""

    def _outcome(self) -> Job:
        if self._error is not None:
            raise self._error
        assert self._job is not None, "an answered handle holds its job or its error"
        return self._job

    def __repr__(self) -> str:
        state = "pending" if not self._done else ("failed" if self._error else "stored")
        return f"<{type(self).__name__} {self.request.type} {state}>"


_Handle = TypeVar("_Handle", bound=BasePendingJob)


class PipelineBase(Generic[_Handle]):
    """The bookkeeping of a pipeline; the twins guard it (a lock, or the loop)."""

    def __init__(self, client: BaseClient, *, max_pending: int) -> None:
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be a positive int, not {max_pending!r}")
        self._client = client
        self._max_pending = max_pending
        self._queued: list[_Handle] = []
        self._unanswered = 0
        self._failed: list[_Handle] = []
        self._closed = False

    @property
    def max_pending(self) -> int:
        """Most jobs enqueued and not yet answered."""
        return self._max_pending

    @property
    def unanswered(self) -> int:
        """Jobs enqueued and not yet answered."""
        return self._unanswered

    @property
    def is_closed(self) -> bool:
        """Whether the pipeline was closed."""
        return self._closed

    def _build(
        self, type: str, payload: Any, options: dict[str, Any]
    ) -> queue_service_pb2.EnqueueJobRequest:
        """The request of one job; a payload the serializer cannot encode raises here."""
        return self._client._enqueue_request(JobRequest(type, payload, **options))

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the {type(self).__name__} is closed; open another with pipeline()")
        self._client._ensure_open()

    def _has_room(self) -> bool:
        return self._unanswered < self._max_pending

    def _full_error(self) -> PipelineFullError:
        return PipelineFullError(
            f"the pipeline holds {self._unanswered} unanswered jobs (max_pending="
            f"{self._max_pending}); await wait_for_room() or flush() before enqueueing more"
        )

    def _admit(self, handle: _Handle) -> None:
        self._queued.append(handle)
        self._unanswered += 1

    def _next_batch(self) -> list[_Handle]:
        """The jobs of the next call: all queued since the previous one, up to a batch."""
        if len(self._queued) <= MAX_BATCH:
            batch, self._queued = self._queued, []
        else:
            batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
        return batch

    def _answer(self, batch: list[_Handle], outcomes: Sequence[EnqueueOutcome]) -> list[_Handle]:
        """Settles each handle of `batch` with its job or its error; returns the failed ones.

        Touches the handles only, so the sync twin runs it outside its lock.
        """
        failed = []
        for handle, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, JobwireError):
                handle._settle(outcome)
                failed.append(handle)
            else:
                handle._settle(self._client._enqueued(handle.request, outcome))
        return failed

    @staticmethod
    def _send_failed(
        error: BaseException, sent: int, why: str = "enqueue failed"
    ) -> list[EnqueueOutcome]:
        """The outcomes of a send that failed outside gRPC: never leave a handle unanswered."""
        failed = JobwireError(f"{why}: {error!r}")
        failed.__cause__ = error
        return [failed] * sent

    def _answered(self, batch: list[_Handle], failed: list[_Handle]) -> None:
        self._failed.extend(failed)
        self._unanswered -= len(batch)

    def _still_unanswered(self) -> TimeoutError:
        return TimeoutError(f"{self._unanswered} pipelined enqueues still unanswered")

    def _report(self) -> None:
        """Raises the failures since the previous report, once."""
        failed, self._failed = self._failed, []
        if failed:
            raise EnqueueFailedError(failed)
