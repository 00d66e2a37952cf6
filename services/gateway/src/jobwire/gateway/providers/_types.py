"""The data the lease state machine and the providers exchange."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Generic, TypeVar

from jobwire.gateway._models import AttemptEnd, JobRecord, JobState
from jobwire.gateway.providers._flow import HeldCounts
from jobwire.v1 import job_pb2, worker_service_pb2

H = TypeVar("H")
"""A provider's handle on one leased job (SQS: its message and receipt)."""

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
    job: JobRecord
    reason: RevokeReason
    message: str
    delivered_at: float
    """When the lease was delivered (``time.monotonic()``)."""


def _nothing() -> None:
    pass


@dataclass(eq=False)
class Consumer:
    """One open worker stream. Compared by identity."""

    worker_id: str
    queues: tuple[str, ...]
    job_types: frozenset[str]
    lease_duration: float
    on_revoke: Callable[[Revocation], None]
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    host: str = ""
    pid: int = 0
    sdk: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    connect_time: float = field(default_factory=time.time)
    on_drain: Callable[[], None] = _nothing
    """Ask the stream's worker to finish its jobs and disconnect (the session sets it)."""
    credits: int = 0
    """Credits granted (the session keeps it up to date)."""
    completed: int = 0
    """Jobs completed since the stream opened."""
    failed: int = 0
    """Attempts failed since the stream opened."""
    last_seen_time: float = field(default_factory=time.time)
    """When the worker's last frame arrived."""
    draining: bool = False
    """Whether the worker was asked to drain."""

    def accepts(self, job_type: str) -> bool:
        """Whether this consumer handles jobs of ``job_type``."""
        return not self.job_types or job_type in self.job_types


@dataclass(slots=True)
class Claim(Generic[H]):
    """A job a provider took for a consumer: already ``PROCESSING``, attempt counted."""

    job: JobRecord
    handle: H


class LeaseTimer:
    """One loop timer for the leases that end at the same instant.

    The leases of one delivery frame share one (they end together), so a
    frame costs one timer, not one per job. Each lease lets go of it when it
    ends; the last one to let go cancels it.
    """

    __slots__ = ("handle", "leases", "live")

    def __init__(self, leases: list[Lease[Any]]) -> None:
        self.leases = leases
        self.live = len(leases)
        self.handle: asyncio.TimerHandle | None = None

    def release(self) -> None:
        """One lease no longer needs the timer."""
        self.live -= 1
        if self.live <= 0 and self.handle is not None:
            self.handle.cancel()
            self.handle = None


@dataclass(slots=True, eq=False)
class Lease(Generic[H]):
    """A job leased to one consumer until it answers or the lease ends."""

    id: str
    job: JobRecord
    consumer: Consumer
    handle: H
    expire_time: float
    timeout_time: float | None
    delivered_at: float
    """``time.monotonic()`` at delivery, for the handler's duration."""
    timer: LeaseTimer | None = None

    @property
    def deadline(self) -> float:
        """When the lease ends unless extended: its expiry, or the job's timeout if sooner."""
        if self.timeout_time is None:
            return self.expire_time
        return min(self.expire_time, self.timeout_time)

    @property
    def times_out(self) -> bool:
        """Whether the job's timeout, not the lease's expiry, comes first."""
        return self.timeout_time is not None and self.timeout_time <= self.expire_time


@dataclass(frozen=True, slots=True)
class Ending(Generic[H]):
    """The end of a lease, for the provider to record."""

    lease: Lease[H]
    end: AttemptEnd


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job leased to a consumer, as the servicer sends it."""

    job: JobRecord
    lease_id: str
    lease_expire_time: float


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


@dataclass(frozen=True, slots=True)
class LeaseOutcome:
    """Result of an ack or nack for one lease; ``reason`` is empty when ``ok``."""

    lease_id: str
    ok: bool
    reason: str = ""
    message: str = ""
    job: JobRecord | None = None
    """The job, when the answer was applied."""
    state: JobState | None = None
    """Where the answer took the job (completed, failed, dead), when applied."""
    delivered_at: float = 0.0
    """``time.monotonic()`` at delivery, when applied."""


@dataclass(slots=True)
class QueueCounts:
    """Counts of one queue (``jobwire.v1.QueueStats``)."""

    queue: str
    by_state: dict[JobState, int]
    oldest_pending_age: float
    workers: int = 0
    """Worker streams of this gateway on the queue (the state machine fills it in)."""
    backend: tuple[int, int, int] | None = None
    """Approximate (visible, in flight, delayed) counts the backend reports, if any."""
    pending_types: frozenset[str] = frozenset()
    """Types of the queue's pending jobs (the provider fills it in)."""
    unserved_types: tuple[str, ...] = ()
    """Pending types no consumer of this gateway takes (the state machine fills it in)."""
    paused: bool = False
    """Whether deliveries from the queue are paused."""
    held: HeldCounts | None = None
    """Pending jobs held back by flow control, per limit (None: the queue has no limits)."""


@dataclass(frozen=True, slots=True)
class Purged:
    """What a purge deleted (or would delete, when only validated)."""

    count: int
    processing: tuple[str, ...] = ()
    """Ids of the deleted jobs that were processing, whose leases are revoked."""


WORKER_SHARE_INTERVAL = 2.0
"""Seconds between two publications of a gateway's worker streams (``WorkerBoard.publish``)."""
WORKER_FRESHNESS = 5 * WORKER_SHARE_INTERVAL
"""A published stream is shown while its gateway refreshed it this recently."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One worker stream, as ``ListWorkers`` shows it (``jobwire.v1.WorkerInfo``)."""

    worker_id: str
    session_id: str
    gateway: str
    host: str = ""
    pid: int = 0
    sdk: str = ""
    queues: tuple[str, ...] = ()
    job_types: tuple[str, ...] = ()
    credits: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    connect_time: float = 0.0
    last_seen_time: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    draining: bool = False

    def as_json(self) -> dict[str, Any]:
        """The stream as a JSON object, as a shared backend stores it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, fields: dict[str, Any], drain: bool = False) -> WorkerInfo:
        """A stream read back from :meth:`as_json`; ``drain``: another gateway asked it to."""
        fields = dict(fields)
        # JSON gives lists back where the dataclass holds tuples.
        fields["queues"] = tuple(fields.get("queues", ()))
        fields["job_types"] = tuple(fields.get("job_types", ()))
        fields["draining"] = bool(fields.get("draining")) or drain
        return cls(**fields)
