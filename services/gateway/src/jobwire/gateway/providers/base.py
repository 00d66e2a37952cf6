"""The provider seam: the storage hooks a queue backend implements.

A provider is storage behind a narrow interface. The rules live once, above
it, in :class:`~jobwire.gateway.providers._leases.Leases` (the lease state
machine: lease table, timers, fencing, the retry-or-dead decision) and in
:mod:`jobwire.gateway._dedup` (deduplication). A provider stores jobs, finds
them, takes ready ones for a consumer, and records what the state machine
decided. ``services/gateway/PROVIDERS.md`` explains each hook and the tests a
new provider runs. Every method runs on the gateway's event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from typing import ClassVar, Generic, Protocol

from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobFilter, JobRecord, NewJob
from jobwire.gateway.providers._types import (
    Claim,
    Consumer,
    Ending,
    H,
    Lease,
    QueueCounts,
    RevokeReason,
)


class ProviderHost(Protocol):
    """What a provider may ask of the lease state machine that drives it."""

    def leased_job_ids(self) -> Collection[str]:
        """Ids of the jobs leased on this gateway now."""
        ...

    def lost(self, job_id: str, reason: RevokeReason, message: str) -> None:
        """The backend took a job leased here back (cancelled through another gateway)."""
        ...


class _Unbound:
    def leased_job_ids(self) -> Collection[str]:
        return ()

    def lost(self, job_id: str, reason: RevokeReason, message: str) -> None:
        pass


class QueueProvider(ABC, Generic[H]):
    """A queue backend's storage. Subclasses register a factory in :mod:`.providers`.

    Args:
        events: where the provider publishes the changes it makes by itself
            (a delayed job coming due, a change another gateway made).
        dedup: the deduplication rule, with the configured window.
    """

    #: Longest delay the backend holds natively, in seconds; None means any.
    #: Longer delays go through the scheduler.
    max_native_delay: ClassVar[float | None] = None

    def __init__(self, events: JobEvents, dedup: DedupRule) -> None:
        self.events = events
        self.dedup = dedup
        self.host: ProviderHost = _Unbound()

    def bind(self, host: ProviderHost) -> None:
        """Called once by the lease state machine that drives this provider."""
        self.host = host

    async def open(self) -> None:  # optional hook
        """Connect to the backend. Called once before serving."""

    async def aclose(self) -> None:  # optional hook
        """Release the backend's resources. Called once at shutdown."""

    # Jobs --------------------------------------------------------------------

    @abstractmethod
    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store new jobs; return each stored job and whether it was a duplicate.

        Duplicates are decided by ``self.dedup.admit`` on the jobs that hold
        the batch's request ids and keys. A job with a ``schedule_time`` ahead
        is ``SCHEDULED`` and becomes ready then (the scheduler holds delays
        beyond :attr:`max_native_delay`). An error stores none of the batch.
        """

    @abstractmethod
    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job as clients see it, or None when it is unknown (or forgotten)."""

    @abstractmethod
    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """Return up to ``limit`` jobs, newest first, after ``cursor``, and the next cursor.

        Raises ``InvalidPageTokenError`` when the cursor is not one of its own.
        """

    @abstractmethod
    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts of ``queue``, or of every known queue when None.

        ``pending_types`` should name the types of the queue's pending jobs
        (the state machine tells from it which no worker takes); ``workers``
        is left 0.
        """

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The stored jobs that hold these deduplication keys now (``self.dedup.holds``).

        The service asks when a batch holds jobs for the scheduler too, so
        that one key holds across both stores. Providers whose delays never
        go through the scheduler (``max_native_delay`` None and a durable
        store) are never asked.
        """
        raise NotImplementedError(f"{type(self).__name__} does not look up deduplication keys")

    @abstractmethod
    async def cancel(self, job_id: str, message: str, lease: Lease[H] | None) -> JobRecord | None:
        """Cancel an unfinished job (``JobRecord.cancel``); return it as it is after.

        ``lease`` is this gateway's lease on the job, already revoked by the
        state machine; a job processing on another gateway is cancelled in
        storage, and that gateway is told (its provider calls
        ``host.lost``). A finished job is returned unchanged; None when the
        job is unknown.
        """

    # Leases ------------------------------------------------------------------

    @abstractmethod
    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[H]]:
        """Take up to ``max_jobs`` ready jobs for ``consumer``, waiting until one is ready.

        Jobs come from the consumer's queues, of types it accepts, oldest
        first. Each is recorded as leased before it is returned
        (``JobRecord.begin_attempt`` with the next attempt number). Cancelling
        the wait must lose nothing: a job taken is returned or put back.
        """

    @abstractmethod
    async def settle(self, endings: Sequence[Ending[H]]) -> Sequence[bool] | None:
        """Record how leases ended (``JobRecord.end_attempt`` on each lease's job).

        A ``FAILED`` job becomes ready again at ``end.run_at``, a ``PENDING``
        one at once. Returns per ending whether storage still held that lease
        (another gateway may have taken it back), or None when all were.
        """

    async def extend(self, leases: Sequence[Lease[H]]) -> Sequence[bool]:
        """Keep the leases' jobs from the backend until their new ``expire_time``.

        Returns per lease whether the backend still holds it. Backends whose
        leases live only in this gateway have nothing to do.
        """
        return [True] * len(leases)

    async def save_progress(self, lease: Lease[H]) -> None:  # optional hook
        """Store the progress the worker reported (already on ``lease.job``)."""
