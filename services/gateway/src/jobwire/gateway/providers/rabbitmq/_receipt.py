"""Deliveries turned into leases, decided by the job records.

The broker says a message is there; the records say what its job is now.
For each message delivered to a worker stream's channel:

* a finished job (completed, dead, cancelled), a purged one, or a second copy
  of a job leased on some gateway is acked and dropped;
* a job whose record is ``PROCESSING`` and whose message comes back
  ``redelivered`` (by the broker, or as a gateway's copy of such a message,
  ``x-jobwire-redelivered``) lost its lease with its gateway or channel: the
  lost attempt counts, and the job is dead when it was the last; its next
  attempt is committed before it is leased (a takeover), and so is one of a
  job whose message the broker returned more often than its record counts
  attempts (an attempt its gateway had not recorded yet may still be running);
* a delayed or backed-off job whose time has not come is parked again in a
  delay queue (a copy of a failed job that was already parked is dropped);
* a job a stream does not take (its types) is parked for a second, so it
  comes back as a fresh message rather than bouncing against
  ``x-delivery-limit``;
* anything else is leased: the next attempt, counted in the record.

Attempts: the record counts those it saw start; a message also carries the
attempts made before it was published (``x-jobwire-after``) and the broker
counts its returns (``x-delivery-count``). Every return is an attempt's end
(a lease lost, requeued; a gateway or channel gone with the lease), since a
delivery that starts no attempt goes back as a fresh message rather than by
a requeue; so an attempt whose record a dying gateway never committed still
counts. The exception is a channel that closes with deliveries not leased
yet (prefetched when a gateway dies): those count one attempt too many.

A message that is not a jobwire job is rejected to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import AttemptEnd, Failure, JobRecord, JobState
from jobwire.gateway.providers._records import JobRecords
from jobwire.gateway.providers._retry import exhausted
from jobwire.gateway.providers._types import Claim, Consumer
from jobwire.gateway.providers.rabbitmq._codec import Carried, decode
from jobwire.gateway.providers.rabbitmq._stream import Handle

logger = logging.getLogger("jobwire.gateway.rabbitmq")

EARLY = 0.002
"""Seconds before its time at which a parked job counts as due (timer slack)."""
SKIP_DELAY = 1.0
"""Seconds a job no stream here takes is parked before it is offered again."""

Park = Callable[[JobRecord, Handle, float, int], None]
"""Park a job's message for some seconds, as a fresh copy, then ack the delivered one."""


class Receipt:
    """Decides what each delivered message is.

    Args:
        records: the job records.
        events: where jobs found dead on delivery are published.
        park: parks a message for some seconds (after which attempt count).
        purged_among: which of some job ids were purged.
        leased_here: ids of the jobs leased on this gateway.
    """

    def __init__(
        self,
        records: JobRecords,
        events: JobEvents,
        park: Park,
        purged_among: Callable[[Collection[str]], Awaitable[set[str]]],
        leased_here: Callable[[], Collection[str]],
    ) -> None:
        self._records = records
        self._events = events
        self._park = park
        self._purged_among = purged_among
        self._leased_here = leased_here
        self.purged_here: set[str] = set()
        """Jobs purged through this gateway whose messages were not seen yet:
        dropped on delivery without asking the records."""

    async def accept(self, consumer: Consumer, handles: Sequence[Handle]) -> list[Claim[Handle]]:
        """Lease what is leasable among ``handles``; settle the rest.

        Raises:
            UnavailableError: the records could not be read; nothing was settled.
        """
        carried: list[tuple[Handle, Carried]] = []
        for handle in handles:
            try:
                item = decode(handle.properties, handle.body)
            except ValueError as error:
                logger.warning(
                    "a message that is not a jobwire job goes to dead letters: %s", error
                )
                handle.reject()
                continue
            job_id = handle.job_id = item.record.id
            if job_id in self.purged_here:
                self.purged_here.discard(job_id)
                handle.ack()
                continue
            carried.append((handle, item))
        if not carried:
            return []
        views = await self._records.for_receipt([item.record.id for _, item in carried])
        missing = {item.record.id for _, item in carried if item.record.id not in views}
        purged = await self._purged_among(missing) if missing else set()
        now = time.time()
        leased = self._leased_here()
        seen: set[str] = set()
        claims: list[Claim[Handle]] = []
        for handle, item in carried:
            job_id = item.record.id
            if job_id in purged or job_id in seen or job_id in leased:
                handle.ack()  # gone, or a second copy of a job leased here
                continue
            seen.add(job_id)
            view = views.get(job_id)
            if view is None:
                # Its record was pruned or lost: the message is the job.
                record = item.record
                record.attempt = item.after
                try:
                    await self._records.adopt(record)
                except UnavailableError:
                    handle.requeue(SKIP_DELAY)  # looked at again once the database is back
                    continue
            else:
                record = view.record
            lost = record.state is JobState.PROCESSING and handle.redelivered
            # The broker gave the message back more often than the record saw
            # attempts end: an attempt whose record its gateway has not committed
            # yet may still be running there (its channel closed under it).
            unseen = item.after + handle.returns > record.attempt
            attempt = self._attempt(record, item, handle, now)
            if attempt is None:
                continue
            accepted = consumer.accepts(record.type)
            if accepted:
                record.begin_attempt(attempt, consumer.worker_id, now)
            # A takeover commits the next attempt (with the lost one's end) before
            # the job runs again, so a late finish of an earlier attempt either
            # came first (the job is not run again) or is refused (it is older
            # than the stored attempt).
            taken_over = lost or (unseen and accepted)
            if taken_over and not await self._records.take_over(record):
                handle.ack()  # an earlier attempt was answered after all, or taken over
                continue
            if not accepted:
                self._park(record, handle, SKIP_DELAY, record.attempt)
                if record.state is JobState.PENDING and not lost:
                    self._records.save(record)
                continue
            if not taken_over:
                self._records.save(record)
            claims.append(Claim(record, handle))
        return claims

    def _attempt(self, record: JobRecord, item: Carried, handle: Handle, now: float) -> int | None:
        """The attempt a delivery starts, or None when it starts none (settled here)."""
        state = record.state
        if state.is_terminal:
            handle.ack()
            return None
        if state is JobState.PROCESSING:
            if not handle.redelivered:
                handle.ack()  # a second copy of a job leased on another gateway
                return None
            if exhausted(record.attempt, record.max_retries):
                self._lost_with_its_holder(record, handle, now)
                return None
            # The lost attempt counts; the job is pending until leased again.
            record.end_attempt(AttemptEnd(JobState.PENDING, now, _lost(record.attempt)))
            return max(record.attempt, item.after + handle.returns) + 1
        due = record.schedule_time
        if state in (JobState.SCHEDULED, JobState.FAILED) and due is not None and due > now + EARLY:
            if state is JobState.FAILED and item.after < record.attempt:
                handle.ack()  # the failed attempt's own message: its parked copy comes back
                return None
            self._park(record, handle, due - now, item.after)
            return None
        # The broker's returns of this message count too: an attempt whose
        # record a gateway did not commit before it died was one.
        return max(record.attempt, item.after + handle.returns) + 1

    def _lost_with_its_holder(self, record: JobRecord, handle: Handle, now: float) -> None:
        """The last attempt's lease ended with its gateway or channel, no retry left: dead."""
        record.end_attempt(AttemptEnd(JobState.DEAD, now, _lost(record.attempt)))
        self._records.save(record, handle.reject)
        self._events.publish(record)


def _lost(attempt: int) -> Failure:
    return Failure(
        f"attempt {attempt} was lost with its gateway or channel: its lease ended "
        "without an answer",
        "WORKER_LOST",
        attempt=attempt,
    )


def spawn(tasks: set[asyncio.Task[None]], step: Awaitable[None]) -> asyncio.Task[None]:
    """Run ``step`` as a task kept in ``tasks`` until it ends; return the task."""
    task = asyncio.ensure_future(step)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task
