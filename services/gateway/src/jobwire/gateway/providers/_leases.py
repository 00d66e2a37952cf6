"""The lease state machine: one for every provider, written once.

A job a provider hands out is leased to one consumer (a worker stream) until
the worker acks or nacks it, the lease expires, the job's timeout passes, the
job is cancelled, or the stream drops. Three layers own everything about
that, so that a provider is only storage (:mod:`.base`):

* :mod:`._lease_table`: the lease table (by lease id per consumer, and by
  job id), the credits each consumer uses, one timer per deadline, and what
  the provider sees (``ProviderHost``);
* :mod:`._producer_side`: cancellation of a leased job, purges, replays and
  the counts with this gateway's workers;
* this module, the worker side: lease ids (``<job id>.<attempt>``) and the
  fencing of answers for leases that are not the consumer's (late, foreign,
  unknown), with the reason why; the ack, nack, extension, progress,
  timeout, expiry and disconnect flows, and the retry-or-dead decision
  (:mod:`._retry`).

Every method runs on the event loop; the table changes without awaiting, and
providers are called with what was decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import AttemptEnd, Failure, JobState
from jobwire.gateway.providers._lease_table import Holder
from jobwire.gateway.providers._producer_side import ProducerSide
from jobwire.gateway.providers._retry import RetryPolicy
from jobwire.gateway.providers._types import (
    AckRequest,
    Consumer,
    Delivery,
    Ending,
    H,
    Lease,
    LeaseOutcome,
    NackRequest,
    RevokeReason,
)
from jobwire.gateway.providers.base import QueueProvider
from jobwire.v1 import job_pb2

logger = logging.getLogger("jobwire.gateway.leases")


class Leases(ProducerSide[H]):
    """Leases of one gateway on top of a provider's storage.

    Args:
        provider: the storage.
        retry: the backoff between attempts.
        events: where lease transitions are published.
    """

    def __init__(self, provider: QueueProvider[H], retry: RetryPolicy, events: JobEvents) -> None:
        super().__init__(provider, events)
        self.retry = retry
        self._tasks: set[asyncio.Task[None]] = set()

    # Worker side -------------------------------------------------------------

    async def disconnect(self, consumer: Consumer) -> None:
        """Forget a consumer; each job it held is available again at once, attempt counted."""
        now = time.time()
        endings: list[Ending[H]] = []
        for lease in self._remove(consumer):
            job = lease.job
            message = f"worker {consumer.worker_id} disconnected during the attempt"
            failure = Failure(
                message, "WORKER_LOST", attempt=job.attempt, worker_id=consumer.worker_id
            )
            endings.append(Ending(lease, self.retry.after_loss(job, failure, now)))
        if endings:
            await self._settle_quietly(endings)
        await self.provider.release(consumer)

    async def receive(self, consumer: Consumer, max_jobs: int) -> list[Delivery]:
        """Lease up to ``max_jobs`` jobs, waiting until at least one is ready."""
        claims = await self.provider.claim(consumer, max_jobs)
        holder = self._holders[consumer]
        leases, by_job = holder.leases, self._by_job
        loop = asyncio.get_running_loop()
        now, delivered_at = time.time(), time.monotonic()
        expire_time = now + consumer.lease_duration
        together: list[Lease[H]] = []  # the leases that end at expire_time
        deliveries: list[Delivery] = []
        for claim in claims:
            job = claim.job
            timeout = job.timeout
            lease = Lease(
                id=f"{job.id}.{job.attempt}",
                job=job,
                consumer=consumer,
                handle=claim.handle,
                expire_time=expire_time,
                timeout_time=now + timeout if timeout is not None else None,
                delivered_at=delivered_at,
            )
            if timeout is None or now + timeout >= expire_time:
                together.append(lease)
            else:
                self._arm(lease, now, loop)
            leases[lease.id] = lease
            by_job[job.id] = lease
            deliveries.append(Delivery(job, lease.id, expire_time))
        if together:
            self._arm_all(together, expire_time - now, loop)
        self.events.publish_all(claim.job for claim in claims)
        return deliveries

    async def ack(self, consumer: Consumer, items: Sequence[AckRequest]) -> list[LeaseOutcome]:
        """Complete leased jobs with their results."""
        now = time.time()
        return await self._answer(
            consumer,
            [item.lease_id for item in items],
            lambda lease, i: AttemptEnd(
                JobState.COMPLETED,
                now,
                result=items[i].result,
                result_content_type=items[i].result_content_type,
            ),
        )

    async def nack(self, consumer: Consumer, items: Sequence[NackRequest]) -> list[LeaseOutcome]:
        """Record failed attempts: retried after a backoff, or dead."""
        now = time.time()

        def end(lease: Lease[H], i: int) -> AttemptEnd:
            item, job = items[i], lease.job
            failure = Failure.from_proto(
                item.failure,
                attempt=job.attempt,
                retryable=item.retryable,
                worker_id=consumer.worker_id,
            )
            return self.retry.after_failure(job, failure, now, item.retry_delay)

        return await self._answer(consumer, [item.lease_id for item in items], end)

    async def extend(
        self, consumer: Consumer, lease_ids: Sequence[str], duration: float
    ) -> list[tuple[str, float | None]]:
        """Extend leases ``duration`` seconds from now; None for a lease not held.

        The new deadline holds from the moment the extension arrived, whatever
        the backend's round trip takes.
        """
        holder = self._holders[consumer]
        loop = asyncio.get_running_loop()
        now = time.time()
        leases = [holder.leases[i] for i in lease_ids if i in holder.leases]
        for lease in leases:
            lease.expire_time = now + duration
            self._arm(lease, now, loop)
        kept = await self.provider.extend(leases) if leases else []
        expiries: dict[str, float] = {}
        for lease, ok in zip(leases, kept, strict=True):
            if holder.leases.get(lease.id) is not lease:
                continue  # revoked during the round trip
            if not ok:
                # The backend let the job go (SQS showed the message again).
                del holder.leases[lease.id]
                self._unindex(lease)
                continue
            expiries[lease.id] = lease.expire_time
        return [(lease_id, expiries.get(lease_id)) for lease_id in lease_ids]

    async def progress(
        self, consumer: Consumer, lease_id: str, progress: job_pb2.JobProgress
    ) -> bool:
        """Store a leased job's progress and tell its watchers; False for a lease not held."""
        lease = self._holders[consumer].leases.get(lease_id)
        if lease is None:
            return False
        lease.job.progress = progress
        lease.job.update_time = time.time()
        await self.provider.save_progress(lease)
        self.events.publish(lease.job)
        return True

    async def aclose(self) -> None:
        """Stop every lease timer and wait for the endings being recorded."""
        self._stop_timers()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # The machine -------------------------------------------------------------

    async def _answer(
        self,
        consumer: Consumer,
        lease_ids: Sequence[str],
        end_of: Callable[[Lease[H], int], AttemptEnd],
    ) -> list[LeaseOutcome]:
        """Apply one frame's answers; ``end_of(lease, index)`` decides each ending."""
        holder = self._holders[consumer]
        by_job = self._by_job
        outcomes: list[LeaseOutcome | None] = []
        endings: list[Ending[H]] = []
        slots: list[int] = []
        for i, lease_id in enumerate(lease_ids):
            holder.unanswered.discard(lease_id)
            lease = holder.leases.pop(lease_id, None)
            if lease is None:
                outcomes.append(await self._fenced(lease_id))
                continue
            # _unindex, inlined: this runs for every job a worker answers.
            timer = lease.timer
            if timer is not None:
                lease.timer = None
                timer.release()
            if by_job.get(lease.job.id) is lease:
                del by_job[lease.job.id]
            endings.append(Ending(lease, end_of(lease, i)))
            slots.append(len(outcomes))
            outcomes.append(None)
        if not endings:
            return [outcome for outcome in outcomes if outcome is not None]
        applied = await self.provider.settle(endings)
        for n, (slot, ending) in enumerate(zip(slots, endings, strict=True)):
            lease = ending.lease
            if applied is None or applied[n]:
                outcomes[slot] = LeaseOutcome(
                    lease.id,
                    True,
                    job=lease.job,
                    state=ending.end.state,
                    delivered_at=lease.delivered_at,
                )
            else:
                outcomes[slot] = LeaseOutcome(
                    lease.id,
                    False,
                    "LEASE_EXPIRED",
                    "the backend took the job back before the answer",
                )
        self.events.publish_all(
            ending.lease.job for n, ending in enumerate(endings) if applied is None or applied[n]
        )
        return [outcome for outcome in outcomes if outcome is not None]

    async def _fenced(self, lease_id: str) -> LeaseOutcome:
        """Explain why a lease the consumer named is not its own."""
        job_id, _, attempt = lease_id.rpartition(".")
        try:
            job = await self.provider.get(job_id) if job_id else None
        except UnavailableError:
            return LeaseOutcome(lease_id, False, "LEASE_NOT_FOUND", "not a lease of this session")
        if job is None or not attempt.isdigit() or int(attempt) > job.attempt:
            return LeaseOutcome(lease_id, False, "LEASE_NOT_FOUND", "no such lease")
        if int(attempt) == job.attempt and job.state is JobState.PROCESSING:
            return LeaseOutcome(
                lease_id, False, "LEASE_NOT_FOUND", "the lease belongs to another worker session"
            )
        if job.state is JobState.CANCELLED and int(attempt) == job.attempt:
            return LeaseOutcome(lease_id, False, "LEASE_REVOKED", "the job was cancelled")
        return LeaseOutcome(
            lease_id,
            False,
            "LEASE_EXPIRED",
            f"lease of attempt {attempt} ended; the job is now {job.state.name.lower()}",
        )

    def _on_deadline(self, lease: Lease[H], holder: Holder[H]) -> None:
        """A timeout fails the attempt; an expiry loses it, and keeps its credit until answered."""
        job, now, worker = lease.job, time.time(), lease.consumer.worker_id
        if lease.times_out:
            reason = RevokeReason.TIMED_OUT
            message = f"attempt {job.attempt} ran past the job's timeout of {job.timeout:g}s"
            failure = Failure(message, "TIMEOUT", attempt=job.attempt, worker_id=worker)
            end = self.retry.after_failure(job, failure, now)
        else:
            reason = RevokeReason.EXPIRED
            message = f"lease expired after {lease.consumer.lease_duration:g}s without extension"
            failure = Failure(message, "LEASE_EXPIRED", attempt=job.attempt, worker_id=worker)
            end = self.retry.after_loss(job, failure, now)
            holder.unanswered.add(lease.id)
        self._revoke(lease, reason, message)
        self._spawn(self._settle_quietly([Ending(lease, end)]))

    async def _settle_quietly(self, endings: Sequence[Ending[H]]) -> None:
        """Record endings no worker waits for; a backend that is away takes them back later."""
        try:
            applied = await self.provider.settle(endings)
        except Exception as error:
            logger.warning(
                "recording the end of %d leases failed (%s); the backend releases them "
                "when their lease runs out",
                len(endings),
                error,
            )
            return
        self.events.publish_all(
            ending.lease.job for n, ending in enumerate(endings) if applied is None or applied[n]
        )

    def _spawn(self, step: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
