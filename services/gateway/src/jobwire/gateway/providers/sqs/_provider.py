"""AWS SQS provider (``type = "sqs"``), through aiobotocore: the storage hooks.

How the semantics table maps onto SQS (the lease state machine above owns
the rules; this is where they meet SQS):

* **Leases are visibility.** A message is received with a visibility covering
  the lease; an extension is ``ChangeMessageVisibility``; an ack deletes the
  message; a retry sets its visibility to the backoff; a lost lease sets it to
  0, so the job is available again at once. The gateway's own timers end
  leases (SQS visibility is whole seconds and only the safety net for a
  gateway that died); leases longer than ``visibility_timeout`` have their
  message's visibility renewed while they last.
* **Attempts** are ``ApproximateReceiveCount`` less the receipts that were no
  attempt (a message handed back unleased, or received twice), which the
  records count.
* **Long polling on demand** (:mod:`._dispatcher`), only while consumers wait.
* **Job records** live in the gateway's database (:mod:`._records`), with
  writes batched; SQS calls that must follow a write (deleting a finished
  job's message) run once it is committed. A message whose record is finished
  (cancelled, say) is deleted on receipt. Other gateways' cancellations are
  looked up every ``sync_interval`` (:mod:`._sync`).
* **Delays** up to 15 minutes are ``DelaySeconds``; the gateway's scheduler
  holds longer ones (:attr:`SqsProvider.max_native_delay`). Messages are
  built, checked and sent after their records (:mod:`._sending`).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Collection, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, ClassVar, cast

from sqlalchemy import Table

from jobwire.gateway._db import transaction
from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._errors import InvalidArgumentError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import Failure, JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway._provider_config import SqsProviderSettings
from jobwire.gateway.providers._types import (
    Claim,
    Consumer,
    Ending,
    Lease,
    Purged,
    QueueCounts,
)
from jobwire.gateway.providers._worker_rows import WorkerRows
from jobwire.gateway.providers.base import QueueProvider
from jobwire.gateway.providers.sqs._calls import MessageCalls
from jobwire.gateway.providers.sqs._client import approximate_counts, open_client
from jobwire.gateway.providers.sqs._codec import MAX_DELAY
from jobwire.gateway.providers.sqs._errors import (
    SqsUnavailableError,
)
from jobwire.gateway.providers.sqs._messages import Message
from jobwire.gateway.providers.sqs._operations import Operations
from jobwire.gateway.providers.sqs._receiving import Receiving
from jobwire.gateway.providers.sqs._records import JobRecords
from jobwire.gateway.providers.sqs._redrive import REPLAYABLE, Redrive
from jobwire.gateway.providers.sqs._sending import Sending
from jobwire.gateway.providers.sqs._sync import RemoteChanges
from jobwire.gateway.providers.sqs._tables import SharedWorker, effective, to_datetime

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

import logging

logger = logging.getLogger("jobwire.gateway.sqs")

MAX_VISIBILITY = 43_200
"""Longest visibility SQS allows a message, counted from its receipt."""
_CLOSE_TIMEOUT = 5.0


class SqsProvider(QueueProvider[Message]):
    """Queues on AWS SQS, job records in the gateway's database (``type = "sqs"``)."""

    max_native_delay: ClassVar[float | None] = float(MAX_DELAY)
    supports_priority: ClassVar[bool] = False
    replayable: ClassVar[frozenset[JobState]] = REPLAYABLE

    def __init__(self, settings: SqsProviderSettings, events: JobEvents) -> None:
        super().__init__(events, DedupRule(settings.dedup_window.total_seconds()))
        if settings.database_url is None:
            raise ValueError("provider.database_url is unset (GatewaySettings fills it in)")
        self._settings = settings
        self._records = JobRecords(
            settings.database_url,
            dedup=self.dedup,
            retention=settings.history_retention.total_seconds(),
        )
        self._urls = dict(settings.queue_urls)
        self._cap = math.ceil(settings.visibility_timeout.total_seconds())
        self._stack = AsyncExitStack()
        self._client: SQSClient | None = None
        self._calls = MessageCalls(
            lambda: self.client,
            dead_letter_queue_url=settings.dead_letter_queue_url,
            max_message_bytes=settings.max_message_bytes,
            wait_time=math.ceil(settings.wait_time.total_seconds()),
        )
        self._sending = Sending(self._records, self._calls, self._urls, settings.max_message_bytes)
        self._receiving = Receiving(
            self._records, self._calls, events, self._sending.url, self._cap
        )
        self._operations = Operations(self._records)
        self.look_interval = settings.sync_interval.total_seconds()
        self.workers = WorkerRows(
            cast(Table, SharedWorker.__table__),
            functools.partial(transaction, self._records.engine, "job records"),
            stamp=to_datetime,
        )
        self._receiving.purged_among = self._operations.purged_among
        self._redrive = Redrive(
            self._records,
            self._operations,
            self._calls,
            lambda: self.client,
            self._sending,
            events,
            settings.dead_letter_queue_url,
        )
        self._sync = RemoteChanges(
            self._records,
            lambda: self.host,
            events,
            self._cancelled_elsewhere,
            settings.sync_interval.total_seconds(),
            operations=self._operations,
            paused=self._receiving.set_paused,
        )

    @property
    def polling(self) -> dict[str, int]:
        """Messages asked for by the receive calls in flight, per queue (for monitoring)."""
        dispatchers = self._receiving.dispatchers
        return {name: d.asked for name, d in dispatchers.items() if d.asked}

    @property
    def paused(self) -> frozenset[str]:
        """Queues this gateway receives nothing from, as of its last sync."""
        return self._receiving.paused

    @property
    def client(self) -> SQSClient:
        """The SQS client, open between :meth:`open` and :meth:`aclose`."""
        if self._client is None:
            raise SqsUnavailableError("the SQS provider is not open")
        return self._client

    async def open(self) -> None:
        """Open the SQS client and the records database, and check the queues exist."""
        try:
            self._client = await open_client(self._settings, self._stack, self._calls.wait_time)
            await self._records.open()
            self._receiving.set_paused(await self._operations.paused())
        except BaseException:
            await self._stack.aclose()
            raise
        self._sync.start()

    async def aclose(self) -> None:
        """Stop receiving, commit the records, finish pending SQS calls, close the client."""
        await self._sync.stop()
        await self._redrive.aclose()
        await self._receiving.close()
        await self._records.close()
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT):
                await self._calls.drain()
        except TimeoutError:
            logger.warning("SQS calls still pending at shutdown were abandoned")
        await self._stack.aclose()
        self._client = None

    # Jobs --------------------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Record jobs, then send their messages; nothing is sent for a job refused."""
        # A client that gives up half-way must not leave records without messages.
        return await asyncio.shield(self._sending.insert(jobs))

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job from the records (this gateway's own changes included)."""
        record = await self._records.get(job_id)
        return None if record is None else effective(record, time.time())

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List from the records, newest first; the cursor is creation time and id."""
        return await self._records.list(where, limit, cursor, time.time())

    async def cancel(
        self, job_id: str, message: str, lease: Lease[Message] | None
    ) -> JobRecord | None:
        """Cancel a job; one leased here has its message deleted.

        A job leased on another gateway is cancelled in the records; that
        gateway revokes the lease within its ``sync_interval``. A job waiting
        in SQS is deleted when next received.
        """
        now = time.time()
        if lease is not None:
            job = lease.job
            self._receiving.release(job.id)
            job.cancel(message, now)
            self._records.save(job, functools.partial(self._calls.delete, lease.handle))
            await self._records.flush()
            return job
        record = await self._records.get(job_id)
        if record is None or record.state.is_terminal:
            return record
        failure = Failure(message, "CANCELLED", retryable=False, attempt=record.attempt)
        return await self._records.cancel(job_id, failure, now)

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the records, and SQS's own approximate ones."""
        counts = await self._records.counts(queue, time.time())
        paused = await self._operations.paused()
        names = sorted({*counts, *paused}) if queue is None else [queue]
        rows = []
        for name in names:
            row = counts.get(name) or QueueCounts(name, dict.fromkeys(JobState, 0), 0.0)
            row.paused = name in paused
            url = self._urls.get(name)
            if url is not None:
                row.backend = await approximate_counts(self.client, name, url)
            rows.append(row)
        return rows

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys, from the records."""
        return await self._records.key_holders(keys, time.time())

    # Operations --------------------------------------------------------------

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Redrive one dead or cancelled job (see :mod:`._redrive`)."""
        return await self._redrive.replay(job_id, payload, max_retries)

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Redrive every selected dead or cancelled job, once per request id."""
        return await self._redrive.replay_all(selector, request_id)

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete the selected records; their messages are deleted when next received.

        Messages of jobs leased here are deleted at once; other gateways
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
        await self._operations.purge([job.id for job in jobs], now)
        for job_id in processing:
            message = self._receiving.release(job_id)
            if message is not None:
                self._calls.delete(message)
        return Purged(len(jobs), processing)

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Record the pause for every gateway; this one follows at once, others on sync."""
        if queue not in self._urls:
            names = ", ".join(sorted(self._urls))
            raise InvalidArgumentError(
                "queue", f"unknown queue {queue!r}: this gateway's SQS queues are {names}"
            )
        await self._operations.set_paused(queue, paused)
        self._receiving.set_paused(await self._operations.paused())

    # Leases ------------------------------------------------------------------

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[Message]]:
        """Wait for jobs from the consumer's queues' dispatchers and record them leased.

        Raises:
            QueueNotConfiguredError: a queue of the consumer has no SQS queue.
        """
        taken = await self._receiving.take(consumer, max_jobs)
        now = time.time()
        claims: list[Claim[Message]] = []
        for item in taken:
            job = item.record
            job.begin_attempt(item.attempt, consumer.worker_id, now)
            deadline = now + consumer.lease_duration
            if job.timeout is not None:
                deadline = min(deadline, now + job.timeout)
            self._receiving.hold(job.id, item.message, deadline, now)
            self._records.save(job)
            claims.append(Claim(job, item.message))
        return claims

    async def settle(self, endings: Sequence[Ending[Message]]) -> None:
        """Record each ending; the message follows once that is committed."""
        for ending in endings:
            job, message, end = ending.lease.job, ending.lease.handle, ending.end
            self._receiving.release(job.id)
            job.end_attempt(end)
            if end.state is JobState.COMPLETED:
                then = functools.partial(self._calls.delete, message)
            elif end.state is JobState.FAILED:
                assert end.run_at is not None
                # Whole seconds, rounded up, within the 12 hours SQS allows since receipt.
                allowed = MAX_VISIBILITY - math.ceil(end.time - message.received_at) - 1
                visibility = max(0, min(allowed, math.ceil(end.run_at - end.time)))
                job.schedule_time = end.time + visibility
                then = functools.partial(self._calls.set_visibility, message, visibility)
            elif end.state is JobState.PENDING:
                then = functools.partial(self._calls.set_visibility, message, 0)
            else:
                then = functools.partial(self._calls.dead_letter, message)
            self._records.save(job, then)

    async def extend(self, leases: Sequence[Lease[Message]]) -> Sequence[bool]:
        """Extend the messages' visibility, in one batch call per queue."""
        return await self._receiving.extend(leases)

    async def save_progress(self, lease: Lease[Message]) -> None:
        """Buffer the progress into the records."""
        self._records.save(lease.job)

    def _cancelled_elsewhere(self, job_id: str) -> None:
        message = self._receiving.release(job_id)
        if message is not None:
            self._calls.delete(message)
