"""The provider seam: what a queue backend must implement.

A provider stores jobs and hands them to consumers (worker streams) under
leases. The servicers and :class:`~jobwire.gateway._service.JobService` own
validation and the wire format; providers own storage, timers, leases and the
state machine of DESIGN.md's semantics table. Every method runs on the
gateway's event loop.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, ClassVar

from jobwire.gateway._config import RetrySettings
from jobwire.gateway._models import Failure, JobRecord, JobState, NewJob
from jobwire.v1 import job_pb2, worker_service_pb2

_Revoked = worker_service_pb2.StreamJobsResponse.LeaseRevoked


class RevokeReason(IntEnum):
    """Why a lease was taken back (``LeaseRevoked.Reason``)."""

    CANCELLED = _Revoked.REASON_CANCELLED
    TIMED_OUT = _Revoked.REASON_TIMED_OUT
    EXPIRED = _Revoked.REASON_EXPIRED
    NOT_FOUND = _Revoked.REASON_NOT_FOUND


@dataclass(frozen=True, slots=True)
class Revocation:
    """A lease the worker must stop working on."""

    lease_id: str
    job_id: str
    reason: RevokeReason
    message: str


@dataclass(slots=True)
class Delivery:
    """A job leased to a consumer."""

    job: JobRecord
    lease_id: str
    lease_expire_time: float


@dataclass(frozen=True, slots=True)
class LeaseOutcome:
    """Result of an ack or nack for one lease; ``reason`` is empty when ``ok``."""

    lease_id: str
    ok: bool
    reason: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class AckRequest:
    """A finished attempt reported by a worker."""

    lease_id: str
    result: bytes | None = None
    result_content_type: str = ""


@dataclass(frozen=True, slots=True)
class NackRequest:
    """A failed attempt reported by a worker."""

    lease_id: str
    failure: job_pb2.JobFailure
    retryable: bool
    retry_delay: float | None


@dataclass(eq=False)
class Consumer:
    """One open worker stream, as providers see it.

    The servicer creates it and reads ``len(leases)`` as the credits in use;
    the provider fills ``leases`` and calls ``on_revoke`` when it takes a
    lease back (cancellation, timeout, expiry).
    """

    worker_id: str
    queues: tuple[str, ...]
    job_types: frozenset[str]
    lease_duration: float
    on_revoke: Callable[[Revocation], None]
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    leases: dict[str, Any] = field(default_factory=dict)
    """Provider-owned lease state keyed by lease id."""

    def accepts(self, job_type: str) -> bool:
        """Whether this consumer handles jobs of ``job_type``."""
        return not self.job_types or job_type in self.job_types


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs ``list_jobs`` returns; empty fields match everything."""

    queue: str = ""
    type: str = ""
    states: frozenset[JobState] = frozenset()

    def matches(self, job: JobRecord) -> bool:
        """Whether ``job`` passes the filter."""
        return (
            (not self.queue or job.queue == self.queue)
            and (not self.type or job.type == self.type)
            and (not self.states or job.state in self.states)
        )


@dataclass(slots=True)
class QueueCounts:
    """Counts of one queue (``jobwire.v1.QueueStats``)."""

    queue: str
    by_state: dict[JobState, int]
    oldest_pending_age: float
    workers: int
    backend: tuple[int, int, int] | None = None
    """Approximate (visible, in flight, delayed) counts the backend reports, if any."""


def lease_deadline(
    job: JobRecord, timed_out: bool, lease_duration: float
) -> tuple[RevokeReason, Failure]:
    """Why a lease reached its deadline without an answer, as every provider records it.

    Args:
        job: The leased job.
        timed_out: Whether the job's timeout came before the lease's expiry.
        lease_duration: The consumer's lease length, for the message.
    """
    if timed_out:
        message = f"attempt {job.attempt} ran past the job's timeout of {job.timeout:g}s"
        return RevokeReason.TIMED_OUT, Failure(message, "TIMEOUT", attempt=job.attempt)
    message = f"lease expired after {lease_duration:g}s without extension"
    return RevokeReason.EXPIRED, Failure(message, "LEASE_EXPIRED", attempt=job.attempt)


class RetryPolicy:
    """Exponential backoff with jitter between attempts of a failed job."""

    def __init__(self, settings: RetrySettings) -> None:
        self._initial = settings.initial_backoff.total_seconds()
        self._max = settings.max_backoff.total_seconds()
        self._multiplier = settings.multiplier
        self._jitter = settings.jitter

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt``."""
        delay = min(self._max, self._initial * self._multiplier ** max(0, attempt - 1))
        return delay * (1 - self._jitter * random.random())  # not security


class JobWatch:
    """Latest snapshot of one watched job; see :meth:`JobEvents.watch`."""

    def __init__(self) -> None:
        self._latest: job_pb2.Job | None = None
        self._changed = asyncio.Event()

    def push(self, snapshot: job_pb2.Job) -> None:
        """Record a new state; a slow reader only ever sees the latest one."""
        self._latest = snapshot
        self._changed.set()

    async def next(self) -> job_pb2.Job:
        """Wait for and return the next snapshot."""
        await self._changed.wait()
        self._changed.clear()
        assert self._latest is not None
        return self._latest


class JobEvents:
    """Fan-out of job changes to ``WatchJob`` streams.

    Publishing costs one dict lookup when nobody watches the job, so providers
    publish on every transition.
    """

    def __init__(self) -> None:
        self._watchers: dict[str, set[JobWatch]] = {}

    def publish(self, job: JobRecord) -> None:
        """Tell the job's watchers about its current state."""
        watchers = self._watchers.get(job.id)
        if watchers:
            snapshot = job.to_proto()
            for watcher in watchers:
                watcher.push(snapshot)

    def watched(self) -> Collection[str]:
        """Ids of the jobs someone watches.

        A provider that learns of other processes' changes by looking them up
        (SQS with several gateways) looks up these.
        """
        return self._watchers.keys()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[JobWatch]:
        """Register a watcher for the duration of the ``with`` block."""
        watcher = JobWatch()
        self._watchers.setdefault(job_id, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers[job_id]
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[job_id]


class QueueProvider(ABC):
    """A queue backend. Subclasses register a factory in :mod:`.registry`."""

    #: Longest delay the backend holds natively, in seconds; None means any.
    #: Longer delays go through the scheduler.
    max_native_delay: ClassVar[float | None] = None

    def __init__(self, retry: RetrySettings, events: JobEvents) -> None:
        self.retry = RetryPolicy(retry)
        self.events = events

    async def open(self) -> None:  # noqa: B027  # optional hook
        """Connect to the backend. Called once before serving."""

    async def aclose(self) -> None:  # noqa: B027  # optional hook
        """Release the backend's resources. Called once at shutdown."""

    # Producer side -----------------------------------------------------------

    @abstractmethod
    async def enqueue(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store ``jobs``; return each stored job and whether it was deduplicated."""

    @abstractmethod
    async def get_job(self, job_id: str) -> JobRecord:
        """Return a job. Raises ``JobNotFoundError``."""

    @abstractmethod
    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """Return up to ``limit`` jobs, newest first, after ``cursor``, and the next cursor.

        Raises ``InvalidPageTokenError`` when the cursor is not one of its own.
        """

    @abstractmethod
    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        """Cancel a job, revoking its lease if it is processing.

        A cancelled job is returned unchanged. Raises ``JobNotFoundError``, or
        ``JobTerminalError`` for a completed or dead job.
        """

    @abstractmethod
    async def stats(self, queue: str | None) -> list[QueueCounts]:
        """Return counts of ``queue``, or of every known queue when None."""

    # Worker side -------------------------------------------------------------

    @abstractmethod
    async def connect(self, consumer: Consumer) -> None:
        """Register a consumer before its first ``receive``."""

    @abstractmethod
    async def receive(self, consumer: Consumer, max_jobs: int) -> list[Delivery]:
        """Lease up to ``max_jobs`` jobs, waiting until at least one is ready.

        Cancelling the wait must lose nothing.
        """

    @abstractmethod
    async def ack(self, consumer: Consumer, items: Sequence[AckRequest]) -> list[LeaseOutcome]:
        """Complete leased jobs with their results."""

    @abstractmethod
    async def nack(self, consumer: Consumer, items: Sequence[NackRequest]) -> list[LeaseOutcome]:
        """Record failed attempts: retry with backoff, or dead."""

    @abstractmethod
    async def extend_leases(
        self, consumer: Consumer, lease_ids: Sequence[str], duration: float
    ) -> list[tuple[str, float | None]]:
        """Extend leases; each result is the new expiry, or None for an unknown lease."""

    @abstractmethod
    async def report_progress(
        self, consumer: Consumer, lease_id: str, progress: job_pb2.JobProgress
    ) -> bool:
        """Record progress on a leased job; False for an unknown lease."""

    @abstractmethod
    async def disconnect(self, consumer: Consumer) -> None:
        """Forget a consumer and make its leased jobs available again at once."""
