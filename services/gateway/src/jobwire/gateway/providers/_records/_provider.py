"""What every broker provider answers from its job records, written once.

SQS and RabbitMQ hold messages; reads, cancellations, counts, replays, purges
and pauses are decided on the records (:class:`JobRecords`, :class:`Operations`)
the same way on both. A broker provider subclasses :class:`RecordsProvider`
and supplies the few broker calls those need: let go of a job's message,
publish replayed jobs afresh, and the broker's own counts.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from abc import abstractmethod
from collections.abc import Collection, Sequence
from typing import ClassVar

from jobwire.gateway._db import transaction
from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import Failure, JobFilter, JobRecord, JobState
from jobwire.gateway._provider_config import RecordsProviderSettings
from jobwire.gateway.providers._records._operations import Operations
from jobwire.gateway.providers._records._store import JobRecords
from jobwire.gateway.providers._records._sync import RemoteChanges
from jobwire.gateway.providers._records._tables import RecordTables, effective, to_datetime
from jobwire.gateway.providers._types import H, Lease, Purged, QueueCounts
from jobwire.gateway.providers._worker_rows import WorkerRows
from jobwire.gateway.providers.base import QueueProvider

BROKER_REPLAYABLE = frozenset({JobState.DEAD, JobState.CANCELLED})
"""The states a broker provider replays: a failed job's message still waits for its backoff."""


class RecordsProvider(QueueProvider[H]):
    """A queue on a message broker whose jobs' state lives in the gateway's database.

    Args:
        settings: the provider's table (records database, retention, sync interval).
        events: where changes made by other gateways are published.
        tables: this provider's record tables.
    """

    supports_priority: ClassVar[bool] = False
    replayable: ClassVar[frozenset[JobState]] = BROKER_REPLAYABLE

    def __init__(
        self, settings: RecordsProviderSettings, events: JobEvents, tables: RecordTables
    ) -> None:
        super().__init__(events, DedupRule(settings.dedup_window.total_seconds()))
        if settings.database_url is None:
            raise ValueError("provider.database_url is unset (GatewaySettings fills it in)")
        self._records = JobRecords(
            settings.database_url,
            tables=tables,
            dedup=self.dedup,
            retention=settings.history_retention.total_seconds(),
        )
        self._operations = Operations(self._records)
        self.look_interval = settings.sync_interval.total_seconds()
        self.workers = WorkerRows(
            tables.workers,
            functools.partial(transaction, self._records.engine, "job records"),
            stamp=to_datetime,
        )
        self._sync = RemoteChanges(
            self._records,
            lambda: self.host,
            events,
            self._cancelled_elsewhere,
            settings.sync_interval.total_seconds(),
            operations=self._operations,
            paused=self._follow_pauses,
        )

    # The broker's part -------------------------------------------------------

    @abstractmethod
    def _let_go(self, job_id: str) -> H | None:
        """Stop holding the message of a job leased here; return it (None: not held here)."""

    @abstractmethod
    def _drop(self, handle: H) -> None:
        """Take a message off the broker for good (the job is finished or gone)."""

    @abstractmethod
    async def _publish_replayed(self, jobs: Sequence[JobRecord], now: float) -> None:
        """Publish replayed jobs as fresh messages; raise when the broker did not take them all."""

    @abstractmethod
    def _follow_pauses(self, queues: Collection[str]) -> None:
        """Receive nothing from these queues (and again from the others) from now on."""

    async def _broker_counts(self, queue: str) -> tuple[int, int, int] | None:
        """The broker's own counts of a queue (``QueueCounts.backend``); None: unknown."""
        return None

    def _purged(self, job_ids: Sequence[str]) -> None:
        """Purged jobs, after their tombstones are committed."""

    def _replayed(self, job_ids: set[str]) -> None:
        """Replayed jobs, after their fresh messages are published."""

    # Reads -------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job from the records (this gateway's own changes included)."""
        record = await self._records.get(job_id)
        return None if record is None else effective(record, time.time())

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List from the records, newest first; the cursor is creation time and id."""
        return await self._records.list(where, limit, cursor, time.time())

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the records, with the broker's own where it gives them."""
        counts = await self._records.counts(queue, time.time())
        paused = await self._operations.paused()
        names = sorted({*counts, *paused}) if queue is None else [queue]
        rows = []
        for name in names:
            row = counts.get(name) or QueueCounts(name, dict.fromkeys(JobState, 0), 0.0)
            row.paused = name in paused
            row.backend = await self._broker_counts(name)
            rows.append(row)
        return rows

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys, from the records."""
        return await self._records.key_holders(keys, time.time())

    # Changes -----------------------------------------------------------------

    async def cancel(self, job_id: str, message: str, lease: Lease[H] | None) -> JobRecord | None:
        """Cancel a job; one leased here has its message dropped once that is committed.

        A job leased on another gateway is cancelled in the records; that
        gateway revokes the lease within its ``sync_interval``. A job waiting
        in the broker is dropped when next received.
        """
        now = time.time()
        if lease is not None:
            job = lease.job
            self._let_go(job.id)
            job.cancel(message, now)
            self._records.save(job, functools.partial(self._drop, lease.handle))
            await self._records.flush()
            return job
        record = await self._records.get(job_id)
        if record is None or record.state.is_terminal:
            return record
        failure = Failure(message, "CANCELLED", retryable=False, attempt=record.attempt)
        return await self._records.cancel(job_id, failure, now)

    async def save_progress(self, lease: Lease[H]) -> None:
        """Buffer the progress into the records."""
        self._records.save(lease.job)

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Record the pause for every gateway; this one follows at once, others on sync."""
        await self._operations.set_paused(queue, paused)
        self._follow_pauses(await self._operations.paused())

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete the selected records; their messages are dropped when next received.

        Messages of jobs leased here are dropped at once; other gateways
        revoke their leases on purged jobs within their ``sync_interval``.
        """
        states = set(selector.states or JobState)
        if not include_processing:
            states.discard(JobState.PROCESSING)
        now = time.time()
        # Stored states: a due scheduled or failed job is stored as such.
        stored = states | (
            {JobState.SCHEDULED, JobState.FAILED} if JobState.PENDING in states else set()
        )
        jobs = [
            job
            for job in await self._operations.selected(selector, stored, now)
            if job.state in states
        ]
        processing = tuple(job.id for job in jobs if job.state is JobState.PROCESSING)
        if validate_only or not jobs:
            return Purged(len(jobs), processing)
        job_ids = [job.id for job in jobs]
        await self._operations.purge(job_ids, now)
        self._purged(job_ids)
        for job_id in processing:
            self._cancelled_elsewhere(job_id)
        return Purged(len(jobs), processing)

    # Replays -----------------------------------------------------------------

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Replay one dead or cancelled job: pending again (attempt 0), as a fresh message."""
        await self._records.flush()
        record = await self._records.get(job_id)
        if record is None:
            return None
        if record.state not in self.replayable:
            return record, False
        stored = await self._replay([record], payload, max_retries)
        return record, bool(stored)

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay every selected dead or cancelled job, once per request id."""
        if request_id:
            done = await self._operations.replayed_count(request_id)
            if done is not None:
                return done
        states = selector.states & self.replayable
        jobs = await self._operations.selected(selector, states, time.time()) if states else []
        count = await self._replay(jobs, None, None, request_id)
        if count is None:  # the same request id, recorded meanwhile by another call
            return await self._operations.replayed_count(request_id) or 0
        self.events.publish_all(jobs)
        return count

    async def _replay(
        self,
        jobs: Sequence[JobRecord],
        payload: bytes | None,
        max_retries: int | None,
        request_id: str = "",
    ) -> int | None:
        """Records first, then fresh messages built from them (so a new payload works too)."""
        now = time.time()
        before = [dataclasses.replace(job) for job in jobs]
        for job in jobs:
            job.replay(now, payload, max_retries)
        count = await self._operations.replay(
            [(job, was.state) for job, was in zip(jobs, before, strict=True)], request_id
        )
        if count is None or not jobs:
            return count
        try:
            await self._publish_replayed(jobs, now)
        except BaseException:
            # Not published: the jobs go back as they were and the request id
            # is forgotten, so the same request replays them when retried. (A
            # message published before the failure finds its job dead on
            # receipt and is dropped.)
            for old in before:
                self._records.save(old)
            await self._records.flush()
            if request_id:
                await self._operations.forget_request(request_id)
            raise
        self._replayed({job.id for job in jobs})
        return count

    # Other gateways' changes -------------------------------------------------

    def _cancelled_elsewhere(self, job_id: str) -> None:
        """A job leased here was cancelled or purged: its message goes at once."""
        handle = self._let_go(job_id)
        if handle is not None:
            self._drop(handle)
