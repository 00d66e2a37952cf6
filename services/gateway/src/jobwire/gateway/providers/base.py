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
from jobwire.gateway._errors import ProviderUnsupportedError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._limits import NO_LIMITS, QueueLimits
from jobwire.gateway._models import REPLAYABLE, JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway.providers._flow import Hold
from jobwire.gateway.providers._types import (
    Claim,
    Consumer,
    Ending,
    H,
    Lease,
    Purged,
    QueueCounts,
    RevokeReason,
    WorkerInfo,
)


class ProviderHost(Protocol):
    """What a provider may ask of the lease state machine that drives it."""

    def leased_job_ids(self) -> Collection[str]:
        """Ids of the jobs leased on this gateway now."""
        ...

    def lost(self, job_id: str, reason: RevokeReason, message: str) -> None:
        """The backend took a job leased here back (cancelled through another gateway)."""
        ...

    def free_credits(self, consumer: Consumer) -> int:
        """Credits of a connected, not draining consumer that its leases do not use now."""
        ...


class WorkerBoard(Protocol):
    """Where the gateways that share a backend publish their worker streams.

    ``ListWorkers`` and ``DrainWorker`` reach every gateway's streams through
    it: each gateway replaces its own every ``WORKER_SHARE_INTERVAL`` seconds
    and picks up the drains other gateways asked of them. A provider that
    several gateways share sets :attr:`QueueProvider.workers` to one.
    """

    async def publish(self, gateway: str, workers: Sequence[WorkerInfo]) -> set[str]:
        """Replace ``gateway``'s streams with ``workers``; return those asked to drain.

        The answer holds the session ids among ``workers`` that another
        gateway marked (:meth:`request_drain`) since the last publication.
        """
        ...

    async def others(self, gateway: str) -> list[WorkerInfo]:
        """Other gateways' streams (not ``gateway``'s) refreshed within ``WORKER_FRESHNESS``."""
        ...

    async def request_drain(self, gateway: str, worker_id: str, session_id: str) -> int:
        """Mark the other gateways' streams of ``worker_id`` as asked to drain; return how many.

        ``session_id`` empty means all of the worker's streams.
        """
        ...


class _Unbound:
    def leased_job_ids(self) -> Collection[str]:
        return ()

    def lost(self, job_id: str, reason: RevokeReason, message: str) -> None:
        pass

    def free_credits(self, consumer: Consumer) -> int:
        return 0


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
    #: Whether ``claim`` honours ``JobRecord.priority``. When False the service
    #: refuses a non-default priority (FAILED_PRECONDITION) rather than ignore it.
    supports_priority: ClassVar[bool] = True
    #: The states ``replay`` replays; the service refuses others before asking.
    replayable: ClassVar[frozenset[JobState]] = REPLAYABLE
    #: Whether the provider enforces flow control (concurrency keys, limits,
    #: rates, fair dispatch: :mod:`._flow` says what that takes). When False
    #: the service refuses concurrency keys and limits (FAILED_PRECONDITION)
    #: rather than ignore them.
    supports_flow_control: ClassVar[bool] = False

    def __init__(self, events: JobEvents, dedup: DedupRule) -> None:
        self.events = events
        self.dedup = dedup
        self.host: ProviderHost = _Unbound()
        self.workers: WorkerBoard | None = None
        """Where gateways sharing the backend publish their worker streams; None when
        one gateway alone uses it (``ListWorkers`` then shows this gateway's)."""
        self.look_interval: float | None = None
        """Seconds between two reads of the changes other gateways made to the
        jobs watched here (``events.watched()``, read back and published with
        ``publish_if_newer``); None when one gateway alone uses the backend.
        ``WatchJobs`` by selector also looks for new jobs this often."""

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

    # Operations (the defaults refuse: PROVIDERS.md says what to implement) ----

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Make one dead, failed or cancelled job pending again (``JobRecord.replay``).

        Returns the job as it is after and whether it was replayed (a job in
        another state is returned unchanged with False); None when unknown.
        """
        raise ProviderUnsupportedError(type(self).__name__, "replay")

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay every dead, failed or cancelled job ``selector`` matches; return how many.

        One operation however many jobs match. With a ``request_id`` already
        recorded, return the count recorded with it and replay nothing; else
        record the id with the count (durable providers: in the same
        transaction as the replay).
        """
        raise ProviderUnsupportedError(type(self).__name__, "replay_jobs")

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete the jobs ``selector`` matches (``PROCESSING`` ones only when asked).

        ``validate_only`` counts them and deletes nothing. A purged job is
        gone: ``get`` returns None and its deduplication key is free. The
        service revokes this gateway's leases on the processing jobs returned;
        a job leased on another gateway is revoked there as a cancellation is.
        """
        raise ProviderUnsupportedError(type(self).__name__, "purge")

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume deliveries from ``queue`` for every gateway of this backend.

        A paused queue still takes jobs, and ``claim`` takes none from it;
        resuming wakes the claims waiting on it at once. Durable providers
        persist it; ``counts`` reports it (``QueueCounts.paused``), listing a
        paused queue even when it holds no job.
        """
        raise ProviderUnsupportedError(type(self).__name__, "set_paused")

    # Flow control (see ._flow; only when supports_flow_control) ---------------

    async def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Store ``queue``'s flow control for every gateway; claims honour it at once.

        Limits raised or removed wake the claims waiting on the queue.
        """
        raise ProviderUnsupportedError(type(self).__name__, "set_limits")

    async def limits(self) -> dict[str, QueueLimits]:
        """Every queue's stored flow control (queues never configured are absent)."""
        return {}

    async def queue_limits(self, queue: str) -> QueueLimits:
        """One queue's stored flow control (``NO_LIMITS`` when never configured)."""
        return NO_LIMITS

    async def key_jobs(self, queue: str, key: str) -> list[JobRecord]:
        """The pending and processing jobs of concurrency key ``key`` in ``queue``, oldest first."""
        raise ProviderUnsupportedError(type(self).__name__, "key_jobs")

    async def hold(self, job: JobRecord) -> Hold | None:
        """The limit that holds the pending ``job`` back now, if one does (``_flow.hold_of``)."""
        return None

    # Leases ------------------------------------------------------------------

    @abstractmethod
    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[H]]:
        """Take up to ``max_jobs`` ready jobs for ``consumer``, waiting until one is ready.

        Jobs come from the consumer's queues that are not paused, of types it
        accepts, highest ``priority`` first (when :attr:`supports_priority`),
        oldest first among equals. Each is recorded as leased before it is
        returned (``JobRecord.begin_attempt`` with the next attempt number).
        Cancelling the wait must lose nothing: a job taken is returned or put
        back.
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
