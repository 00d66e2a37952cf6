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
* **Job records** live in the gateway's database (:mod:`.._records`), with
  writes batched; SQS calls that must follow a write (deleting a finished
  job's message) run once it is committed. A message whose record is finished
  (cancelled, say) is deleted on receipt. Other gateways' cancellations are
  looked up every ``sync_interval`` (``RemoteChanges``).
* **Delays** up to 15 minutes are ``DelaySeconds``; the gateway's scheduler
  holds longer ones (:attr:`SqsProvider.max_native_delay`). Messages are
  built, checked and sent after their records (:mod:`._sending`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Collection, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, ClassVar

from jobwire.gateway._errors import InvalidArgumentError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway._provider_config import SqsProviderSettings
from jobwire.gateway.providers._records import RecordsProvider, RecordTables
from jobwire.gateway.providers._types import Claim, Consumer, Ending, Lease
from jobwire.gateway.providers.sqs._calls import MessageCalls
from jobwire.gateway.providers.sqs._client import approximate_counts, open_client
from jobwire.gateway.providers.sqs._codec import MAX_DELAY
from jobwire.gateway.providers.sqs._dlq_sweep import DeadLetterSweep
from jobwire.gateway.providers.sqs._errors import SqsUnavailableError, sqs_error
from jobwire.gateway.providers.sqs._messages import Message
from jobwire.gateway.providers.sqs._receiving import Receiving
from jobwire.gateway.providers.sqs._sending import Sending

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

logger = logging.getLogger("jobwire.gateway.sqs")

TABLES = RecordTables("jobwire_sqs_", lock_key=0x6A6F627371)
"""The SQS provider's job records (``jobwire_sqs_jobs``, …)."""
MAX_VISIBILITY = 43_200
"""Longest visibility SQS allows a message, counted from its receipt."""
_CLOSE_TIMEOUT = 5.0


class SqsProvider(RecordsProvider[Message]):
    """Queues on AWS SQS, job records in the gateway's database (``type = "sqs"``)."""

    max_native_delay: ClassVar[float | None] = float(MAX_DELAY)

    def __init__(self, settings: SqsProviderSettings, events: JobEvents) -> None:
        super().__init__(settings, events, TABLES)
        self._settings = settings
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
        self._receiving.purged_among = self._operations.purged_among
        self._sweep = DeadLetterSweep(lambda: self.client, settings.dead_letter_queue_url)

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
        await self._sweep.aclose()
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

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Record the pause for every gateway; this one follows at once, others on sync."""
        if queue not in self._urls:
            names = ", ".join(sorted(self._urls))
            raise InvalidArgumentError(
                "queue", f"unknown queue {queue!r}: this gateway's SQS queues are {names}"
            )
        await super().set_paused(queue, paused)

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

    # The broker's part of the records' operations ----------------------------

    def _let_go(self, job_id: str) -> Message | None:
        return self._receiving.release(job_id)

    def _drop(self, handle: Message) -> None:
        self._calls.delete(handle)

    async def _publish_replayed(self, jobs: Sequence[JobRecord], now: float) -> None:
        failed = await self._sending.send([self._sending.outgoing(job, now) for job in jobs])
        if failed:
            out, error = failed[0]
            raise sqs_error(error, out.url)

    def _replayed(self, job_ids: set[str]) -> None:
        self._sweep.sweep(job_ids)

    async def _broker_counts(self, queue: str) -> tuple[int, int, int] | None:
        """SQS's approximate counts."""
        url = self._urls.get(queue)
        return None if url is None else await approximate_counts(self.client, queue, url)

    def _follow_pauses(self, queues: Collection[str]) -> None:
        self._receiving.set_paused(queues)
