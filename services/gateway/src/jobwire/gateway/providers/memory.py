"""In-process provider: the embedded default. Jobs live in this process only.

Everything happens on the event loop without locks: a method never awaits in
the middle of a state change. Waiting consumers park on futures that an
enqueue resolves at once; delays, backoffs and leases are ``loop.call_at``
timers, so nothing polls.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from jobwire.gateway._config import MemoryProviderSettings
from jobwire.gateway._errors import InvalidPageTokenError, JobNotFoundError, JobTerminalError
from jobwire.gateway._models import Failure, JobRecord, JobState, NewJob
from jobwire.gateway.providers.base import (
    AckRequest,
    Consumer,
    Delivery,
    JobEvents,
    JobFilter,
    LeaseOutcome,
    NackRequest,
    QueueCounts,
    QueueProvider,
    Revocation,
    RevokeReason,
    lease_deadline,
)
from jobwire.v1 import job_pb2

# Idempotency keys remembered; older ones are forgotten first.
_MAX_REQUEST_IDS = 100_000


@dataclass(slots=True, eq=False)
class _Job(JobRecord):
    # Order numbers kept on the record rather than in a side table: a dict entry
    # or a tuple per job costs several times the two slots.
    seq: int = 0
    """When the job was stored; ``list_jobs`` pages by it."""
    ready_order: int = 0
    """When the job last became ready; the oldest ready job is taken first."""


@dataclass(slots=True, eq=False)
class _Lease:
    id: str
    job: _Job
    consumer: Consumer
    expire_time: float
    timeout_time: float | None
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _Queue:
    # Ready jobs by type, in ready order. Cancelled jobs stay until popped and
    # are skipped then.
    ready: dict[str, deque[_Job]] = field(default_factory=dict)
    waiters: dict[asyncio.Future[None], Consumer] = field(default_factory=dict)
    counts: Counter[JobState] = field(default_factory=Counter)
    workers: int = 0


class MemoryProvider(QueueProvider):
    """Queues in this process's memory (``type = "memory"``)."""

    def __init__(self, settings: MemoryProviderSettings, events: JobEvents) -> None:
        super().__init__(settings.retry, events)
        self._max_history = settings.max_history
        self._dedup_window = settings.dedup_window.total_seconds()
        self._jobs: dict[str, _Job] = {}
        self._history: deque[str] = deque()
        self._queues: dict[str, _Queue] = {}
        self._dedup: dict[str, str] = {}
        # Request id -> job id, and the ids in the order first remembered (an
        # OrderedDict costs about twice the memory per entry).
        self._requests: dict[str, str] = {}
        self._request_order: deque[str] = deque()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._active: dict[str, _Lease] = {}
        self._order = itertools.count()

    # Producer side -----------------------------------------------------------

    async def enqueue(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs, deduplicating by request id and deduplication key."""
        now = time.time()
        results: list[tuple[JobRecord, bool]] = []
        for new in jobs:
            existing = self._find_duplicate(new, now)
            if existing is not None:
                results.append((existing, True))
                continue
            job = _Job.create(new, now)
            job.seq = next(self._order)
            self._jobs[job.id] = job
            self._queue(job.queue).counts[job.state] += 1
            if new.request_id:
                self._remember_request(new.request_id, job.id)
            if new.deduplication_key:
                self._dedup[new.deduplication_key] = job.id
            if job.state is JobState.SCHEDULED:
                assert job.schedule_time is not None
                self._wake_at(job, job.schedule_time - now)
            else:
                # Its order number is taken just now: sharing it saves an int per job.
                self._push_ready(job, job.seq)
            self.events.publish(job)
            results.append((job, False))
        return results

    async def get_job(self, job_id: str) -> JobRecord:
        """Return a job still in memory."""
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(job_id) from None

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List newest first; the cursor is the order number of the last job returned."""
        if cursor is None:
            before = None
        elif cursor.isdigit():
            before = int(cursor)
        else:
            raise InvalidPageTokenError("page_token", "not a token from this gateway")
        page: list[JobRecord] = []
        last_seq = 0
        for job in reversed(self._jobs.values()):
            if before is not None and job.seq >= before:
                continue
            if where.matches(job):
                if len(page) == limit:
                    return page, str(last_seq)
                page.append(job)
                last_seq = job.seq
        return page, None

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        """Cancel a job; a processing one has its lease revoked first."""
        job = await self.get_job(job_id)
        if job.state is JobState.CANCELLED:
            return job
        if job.state.is_terminal:
            raise JobTerminalError(job_id, job.state.name)
        message = reason or "cancelled"
        lease = self._active.get(job_id)
        if lease is not None:
            self._drop_lease(lease)
            lease.consumer.on_revoke(
                Revocation(lease.id, job_id, RevokeReason.CANCELLED, f"job cancelled: {message}")
            )
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        job.last_error = Failure(message, "CANCELLED", retryable=False, attempt=job.attempt)
        self._finish(job, JobState.CANCELLED, time.time())
        return job

    async def stats(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the per-queue counters kept on every transition."""
        names = sorted(self._queues) if queue is None else [queue]
        now = time.time()
        return [self._counts(name, now) for name in names]

    # Worker side -------------------------------------------------------------

    async def connect(self, consumer: Consumer) -> None:
        """Count the consumer as a worker of its queues."""
        for name in consumer.queues:
            self._queue(name).workers += 1

    async def receive(self, consumer: Consumer, max_jobs: int) -> list[Delivery]:
        """Lease ready jobs, parking on a future until an enqueue resolves it."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._take(consumer, max_jobs)
            if jobs:
                return [self._lease(consumer, job, loop) for job in jobs]
            wake: asyncio.Future[None] = loop.create_future()
            queues = [self._queue(name) for name in consumer.queues]
            for queue in queues:
                queue.waiters[wake] = consumer
            try:
                await wake
            finally:
                for queue in queues:
                    queue.waiters.pop(wake, None)

    async def ack(self, consumer: Consumer, items: Sequence[AckRequest]) -> list[LeaseOutcome]:
        """Complete jobs whose leases this consumer still holds."""
        now = time.time()
        outcomes: list[LeaseOutcome] = []
        for item in items:
            lease = consumer.leases.get(item.lease_id)
            if lease is None:
                outcomes.append(self._fenced(item.lease_id))
                continue
            self._drop_lease(lease)
            lease.job.result = item.result
            lease.job.result_content_type = item.result_content_type
            self._finish(lease.job, JobState.COMPLETED, now)
            outcomes.append(LeaseOutcome(item.lease_id, True))
        return outcomes

    async def nack(self, consumer: Consumer, items: Sequence[NackRequest]) -> list[LeaseOutcome]:
        """Fail attempts: retry after a backoff, or dead."""
        now = time.time()
        outcomes: list[LeaseOutcome] = []
        for item in items:
            lease = consumer.leases.get(item.lease_id)
            if lease is None:
                outcomes.append(self._fenced(item.lease_id))
                continue
            self._drop_lease(lease)
            job = lease.job
            failed = Failure.from_proto(item.failure, attempt=job.attempt, retryable=item.retryable)
            self._fail(job, failed, now, item.retry_delay)
            outcomes.append(LeaseOutcome(item.lease_id, True))
        return outcomes

    async def extend_leases(
        self, consumer: Consumer, lease_ids: Sequence[str], duration: float
    ) -> list[tuple[str, float | None]]:
        """Push lease expiries ``duration`` seconds from now."""
        loop = asyncio.get_running_loop()
        now = time.time()
        results: list[tuple[str, float | None]] = []
        for lease_id in lease_ids:
            lease = consumer.leases.get(lease_id)
            if lease is None:
                results.append((lease_id, None))
                continue
            lease.expire_time = now + duration
            self._arm_lease(lease, now, loop)
            results.append((lease_id, lease.expire_time))
        return results

    async def report_progress(
        self, consumer: Consumer, lease_id: str, progress: job_pb2.JobProgress
    ) -> bool:
        """Store the progress on the job and tell its watchers."""
        lease = consumer.leases.get(lease_id)
        if lease is None:
            return False
        lease.job.progress = progress
        lease.job.update_time = time.time()
        self.events.publish(lease.job)
        return True

    async def disconnect(self, consumer: Consumer) -> None:
        """Put every job the consumer held back in its queue, attempt counted."""
        now = time.time()
        for name in consumer.queues:
            self._queue(name).workers -= 1
        for lease in list(consumer.leases.values()):
            self._drop_lease(lease)
            message = f"worker {consumer.worker_id} disconnected during the attempt"
            self._requeue_lost(
                lease.job, Failure(message, "WORKER_LOST", attempt=lease.job.attempt), now
            )

    async def aclose(self) -> None:
        """Stop every timer; the jobs are gone with the process."""
        for timer in self._timers.values():
            timer.cancel()
        for lease in self._active.values():
            if lease.timer is not None:
                lease.timer.cancel()
        self._timers.clear()

    # State machine -----------------------------------------------------------

    def _set_state(self, job: JobRecord, state: JobState, now: float) -> None:
        counts = self._queue(job.queue).counts
        counts[job.state] -= 1
        counts[state] += 1
        job.state = state
        job.update_time = now

    def _push_ready(self, job: _Job, order: int | None = None) -> None:
        queue = self._queue(job.queue)
        ready = queue.ready.get(job.type)
        if ready is None:
            ready = queue.ready[job.type] = deque()
        job.ready_order = next(self._order) if order is None else order
        ready.append(job)
        for wake, consumer in queue.waiters.items():
            if not wake.done() and consumer.accepts(job.type):
                wake.set_result(None)

    def _wake_at(self, job: _Job, delay: float) -> None:
        self._timers[job.id] = asyncio.get_running_loop().call_later(
            max(0.0, delay), self._make_ready, job
        )

    def _make_ready(self, job: _Job) -> None:
        self._timers.pop(job.id, None)
        if job.state in (JobState.SCHEDULED, JobState.FAILED):
            self._set_state(job, JobState.PENDING, time.time())
            self._push_ready(job)
            self.events.publish(job)

    def _take(self, consumer: Consumer, max_jobs: int) -> list[_Job]:
        candidates = [
            ready
            for name in consumer.queues
            for job_type, ready in self._queue(name).ready.items()
            if ready and consumer.accepts(job_type)
        ]
        taken: list[_Job] = []
        while candidates and len(taken) < max_jobs:
            # Oldest head first across queues and types, so order is kept.
            ready = (
                min(candidates, key=lambda r: r[0].ready_order)
                if len(candidates) > 1
                else candidates[0]
            )
            job = ready.popleft()
            if job.state is JobState.PENDING:
                taken.append(job)
            if not ready:
                candidates.remove(ready)
        return taken

    def _lease(self, consumer: Consumer, job: _Job, loop: asyncio.AbstractEventLoop) -> Delivery:
        now = time.time()
        job.attempt += 1
        job.worker_id = consumer.worker_id
        job.schedule_time = None
        self._set_state(job, JobState.PROCESSING, now)
        lease = _Lease(
            id=f"{job.id}.{job.attempt}",
            job=job,
            consumer=consumer,
            expire_time=now + consumer.lease_duration,
            timeout_time=now + job.timeout if job.timeout is not None else None,
        )
        self._arm_lease(lease, now, loop)
        consumer.leases[lease.id] = lease
        self._active[job.id] = lease
        self.events.publish(job)
        return Delivery(job, lease.id, lease.expire_time)

    def _arm_lease(self, lease: _Lease, now: float, loop: asyncio.AbstractEventLoop) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
        deadline = lease.expire_time
        if lease.timeout_time is not None:
            deadline = min(deadline, lease.timeout_time)
        lease.timer = loop.call_later(deadline - now, self._on_lease_deadline, lease)

    def _on_lease_deadline(self, lease: _Lease) -> None:
        lease.timer = None
        self._drop_lease(lease)
        job, now = lease.job, time.time()
        timed_out = lease.timeout_time is not None and lease.timeout_time <= lease.expire_time
        reason, failed = lease_deadline(job, timed_out, lease.consumer.lease_duration)
        if timed_out:
            self._fail(job, failed, now, None)
        else:
            self._requeue_lost(job, failed, now)
        lease.consumer.on_revoke(Revocation(lease.id, job.id, reason, failed.message))

    def _drop_lease(self, lease: _Lease) -> None:
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        del lease.consumer.leases[lease.id]
        del self._active[lease.job.id]

    def _fail(self, job: _Job, failed: Failure, now: float, delay: float | None) -> None:
        job.last_error = failed
        if not failed.retryable or job.attempt > job.max_retries:
            self._finish(job, JobState.DEAD, now)
            return
        delay = self.retry.backoff(job.attempt) if delay is None else delay
        job.schedule_time = now + delay
        self._set_state(job, JobState.FAILED, now)
        self._wake_at(job, delay)
        self.events.publish(job)

    def _requeue_lost(self, job: _Job, failed: Failure, now: float) -> None:
        """A lease ended without an answer: available again at once, attempt counted."""
        job.last_error = failed
        if job.attempt > job.max_retries:
            self._finish(job, JobState.DEAD, now)
            return
        self._set_state(job, JobState.PENDING, now)
        self._push_ready(job)
        self.events.publish(job)

    def _finish(self, job: JobRecord, state: JobState, now: float) -> None:
        self._set_state(job, state, now)
        job.end_time = now
        if job.deduplication_key and self._dedup_window <= 0:
            self._release_dedup(job)
        self._history.append(job.id)
        while len(self._history) > self._max_history:
            self._forget(self._history.popleft())
        self.events.publish(job)

    def _forget(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        self._queue(job.queue).counts[job.state] -= 1
        self._release_dedup(job)

    def _release_dedup(self, job: JobRecord) -> None:
        if self._dedup.get(job.deduplication_key) == job.id:
            del self._dedup[job.deduplication_key]

    def _find_duplicate(self, new: NewJob, now: float) -> JobRecord | None:
        if new.request_id:
            job_id = self._requests.get(new.request_id)
            if job_id is not None and job_id in self._jobs:
                return self._jobs[job_id]
        if new.deduplication_key:
            job_id = self._dedup.get(new.deduplication_key)
            job = self._jobs.get(job_id) if job_id is not None else None
            if job is not None:
                if not job.state.is_terminal:
                    return job
                assert job.end_time is not None
                if now < job.end_time + self._dedup_window:
                    return job
        return None

    def _remember_request(self, request_id: str, job_id: str) -> None:
        # A known id keeps its place in the order, as in an OrderedDict.
        if request_id not in self._requests:
            self._request_order.append(request_id)
        self._requests[request_id] = job_id
        if len(self._requests) > _MAX_REQUEST_IDS:
            del self._requests[self._request_order.popleft()]

    def _fenced(self, lease_id: str) -> LeaseOutcome:
        """Explain why a lease the consumer named is not its own."""
        job_id, _, attempt = lease_id.rpartition(".")
        job = self._jobs.get(job_id)
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

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _counts(self, name: str, now: float) -> QueueCounts:
        queue = self._queues.get(name) or _Queue()
        oldest: float | None = None
        for ready in queue.ready.values():
            while ready and ready[0].state is not JobState.PENDING:
                ready.popleft()  # drop cancelled entries so the head is live
            if ready:
                head = ready[0]
                since = head.update_time
                oldest = since if oldest is None else min(oldest, since)
        return QueueCounts(
            queue=name,
            by_state={state: queue.counts[state] for state in JobState},
            oldest_pending_age=0.0 if oldest is None else max(0.0, now - oldest),
            workers=queue.workers,
        )
