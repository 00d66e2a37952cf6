"""The memory provider's storage: records, ready queues, counters, timers and indexes.

Everything happens on the event loop without locks: a method never awaits in
the middle of a state change. Waiting claims park on futures that a job
becoming ready resolves at once; delays and backoffs are ``loop.call_later``
timers, so nothing polls. Per queue, ready jobs wait in lanes (one per
concurrency key, :mod:`._lanes`) of one deque per type and priority, and the
counts by state are kept on every transition, so ``counts`` never scans the
jobs.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._flow import HeldCounts, held_counts
from jobwire.gateway.providers._types import Consumer, QueueCounts
from jobwire.gateway.providers.memory._lanes import MemoryQueue

MAX_REQUEST_IDS = 100_000
"""Idempotency keys remembered; older ones are forgotten first."""


@dataclass(slots=True, eq=False)
class MemoryJob(JobRecord):
    """A stored job, with its order numbers."""

    # Order numbers kept on the record rather than in a side table: a dict entry
    # or a tuple per job costs several times the two slots.
    seq: int = 0
    """When the job was stored; ``list`` pages by it."""
    ready_order: int = 0
    """When the job last became ready; the oldest ready job is taken first."""


class MemoryStore:
    """The jobs of one process.

    Args:
        events: where a job that becomes ready by itself (its delay or backoff
            over) is published.
        dedup_window: seconds a finished job keeps its deduplication key.
        max_history: finished jobs kept; the oldest are forgotten first.
    """

    def __init__(self, events: JobEvents, dedup_window: float, max_history: int) -> None:
        self._events = events
        self._dedup_window = dedup_window
        self._max_history = max_history
        self.jobs: dict[str, MemoryJob] = {}
        self.queues: dict[str, MemoryQueue] = {}
        self.dedup_keys: dict[str, str] = {}
        """Deduplication key -> the job that holds it."""
        # Request id -> job id, and the ids in the order first remembered (an
        # OrderedDict costs about twice the memory per entry).
        self.requests: dict[str, str] = {}
        self._request_order: deque[str] = deque()
        self.replays: dict[str, int] = {}
        """``RetryJobs`` request id -> count, oldest first."""
        self.paused: set[str] = set()
        self.configured: set[str] = set()
        """Queues with flow control set (``set_limits``)."""
        self.order = itertools.count()
        """Order numbers: ``MemoryJob.seq`` and ``ready_order``."""
        self._history: deque[str] = deque()
        # History entries of replayed jobs that no longer mean "finished": a
        # replayed job that finishes again is appended again, and its older
        # entry must not forget it early.
        self._stale_history: Counter[str] = Counter()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def queue(self, name: str) -> MemoryQueue:
        """The queue named ``name``, created when first named."""
        queue = self.queues.get(name)
        if queue is None:
            queue = self.queues[name] = MemoryQueue()
        return queue

    # Counts ------------------------------------------------------------------

    def moved(self, job: JobRecord, old: JobState) -> None:
        """Count a job that left state ``old``."""
        counts = self.queue(job.queue).counts
        counts[old] -= 1
        counts[job.state] += 1

    def moved_all(self, jobs: Sequence[JobRecord], old: JobState) -> None:
        """Count jobs that all left state ``old`` (one queue lookup per run of a queue)."""
        name: str | None = None
        counts: Counter[JobState] = Counter()
        for job in jobs:
            if job.queue != name:
                name = job.queue
                counts = self.queue(name).counts
            counts[old] -= 1
            counts[job.state] += 1

    def counts(self, name: str, now: float) -> QueueCounts:
        """One queue's counts, pending types and oldest pending age."""
        queue = self.queues.get(name) or MemoryQueue()
        oldest: float | None = None
        types: set[str] = set()
        for lane in (queue.plain, *queue.lanes.values()):
            for (job_type, _), ready in lane.ready.items():
                while ready and ready[0].state is not JobState.PENDING:
                    ready.popleft()  # drop cancelled entries so the head is live
                if ready:
                    types.add(job_type)
                    since = ready[0].update_time
                    oldest = since if oldest is None else min(oldest, since)
        return QueueCounts(
            queue=name,
            by_state={state: queue.counts[state] for state in JobState},
            oldest_pending_age=0.0 if oldest is None else max(0.0, now - oldest),
            pending_types=frozenset(types),
            paused=name in self.paused,
            held=self._held(queue) if queue.limits.limited else None,
        )

    @staticmethod
    def _held(queue: MemoryQueue) -> HeldCounts:
        limit = queue.limits.max_concurrency_per_key
        busy = {
            key: lane.pending
            for key, lane in queue.lanes.items()
            if limit and len(lane.running) >= limit
        }
        tokens = queue.bucket.available() if queue.bucket is not None else None
        pending = queue.counts[JobState.PENDING]
        return held_counts(queue.limits, pending, busy, queue.counts[JobState.PROCESSING], tokens)

    def unfinished(self) -> int:
        """How many jobs are not finished."""
        return sum(
            count
            for queue in self.queues.values()
            for state, count in queue.counts.items()
            if not state.is_terminal
        )

    # Ready jobs ----------------------------------------------------------------

    def push_ready(
        self,
        job: MemoryJob,
        order: int | None = None,
        *,
        wake: bool = True,
        queue: MemoryQueue | None = None,
    ) -> None:
        """Make a job ready (taken after the ones before it); wake claims that take it."""
        if queue is None:
            queue = self.queue(job.queue)
        lane = queue.lane(job.concurrency_key) if job.concurrency_key else queue.plain
        key = (job.type, job.priority)
        ready = lane.ready.get(key)
        if ready is None:
            ready = lane.ready[key] = deque()
        job.ready_order = next(self.order) if order is None else order
        ready.append(job)
        if lane.key:
            lane.pending += 1
            if not queue.runnable(lane):
                return  # its key is busy: a claim could not take it
        if not lane.queued:
            queue.enqueue(lane)
        if wake:
            for waiter, consumer in queue.waiters.items():
                if not waiter.done() and consumer.accepts(job.type):
                    waiter.set_result(None)

    @staticmethod
    def wake(queue: MemoryQueue, job_types: Collection[str]) -> None:
        """Wake the claims waiting on ``queue`` that accept one of ``job_types``."""
        for wake, consumer in queue.waiters.items():
            if not wake.done() and any(consumer.accepts(t) for t in job_types):
                wake.set_result(None)

    def take(self, consumer: Consumer, max_jobs: int) -> list[MemoryJob]:
        """Pop up to ``max_jobs`` pending jobs the consumer takes, in order.

        Queues with keys or limits give theirs first, as their limits admit
        and rotating across keys; the others in strict priority and age order.
        """
        taken: list[MemoryJob] = []
        plain: list[MemoryQueue] = []
        for name in consumer.queues:
            if name in self.paused:
                continue
            queue = self.queue(name)
            if queue.flows:
                if len(taken) < max_jobs:
                    queue.take(consumer, max_jobs - len(taken), taken)
            else:
                plain.append(queue)
        candidates = [
            ready
            for queue in plain
            for (job_type, _), ready in queue.ready.items()
            if ready and consumer.accepts(job_type)
        ]
        while candidates and len(taken) < max_jobs:
            # Highest priority first, then the oldest head across queues and
            # types, so order is kept (strict priority: see the README).
            ready = (
                min(candidates, key=lambda r: (-r[0].priority, r[0].ready_order))
                if len(candidates) > 1
                else candidates[0]
            )
            job = ready.popleft()
            if job.state is JobState.PENDING:
                taken.append(job)
            if not ready:
                candidates.remove(ready)
        return taken

    def stopped(self, job: MemoryJob) -> None:
        """A job left ``PROCESSING``: free its key's slot and wake the claims it held back."""
        queue = self.queues.get(job.queue)
        if queue is None or not (job.concurrency_key or queue.limits.max_concurrency):
            return
        if queue.release(job):
            for wake in queue.waiters:
                if not wake.done():
                    wake.set_result(None)

    def unready(self, job: MemoryJob) -> None:
        """A pending job left the ready jobs (cancelled, purged): its key counts it no more."""
        if job.concurrency_key:
            lane = self.queue(job.queue).lanes.get(job.concurrency_key)
            if lane is not None:
                lane.pending -= 1

    def rate_wait(self, consumer: Consumer) -> float | None:
        """Seconds until a rate admits a job a consumer's queue holds ready; None: no such."""
        waits = [
            wait
            for name in consumer.queues
            if name not in self.paused and (wait := self.queue(name).rate_wait()) is not None
        ]
        return min(waits) if waits else None

    # Timers ------------------------------------------------------------------

    def wake_at(self, job: MemoryJob, delay: float) -> None:
        """Make a scheduled or failed job ready ``delay`` seconds from now."""
        self._timers[job.id] = asyncio.get_running_loop().call_later(
            max(0.0, delay), self._make_ready, job
        )

    def cancel_timer(self, job_id: str) -> None:
        """Stop the timer that would make a job ready, if it has one."""
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def stop_timers(self) -> None:
        """Stop every timer (at shutdown)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _make_ready(self, job: MemoryJob) -> None:
        self._timers.pop(job.id, None)
        if job.state in (JobState.SCHEDULED, JobState.FAILED):
            old = job.state
            job.state = JobState.PENDING
            job.update_time = time.time()
            self.moved(job, old)
            self.push_ready(job)
            self._events.publish(job)

    # Transitions -------------------------------------------------------------

    def replay(
        self, job: MemoryJob, now: float, payload: bytes | None, max_retries: int | None
    ) -> None:
        """Make a dead, failed or cancelled job pending again (``JobRecord.replay``)."""
        if job.state.is_terminal:
            self._stale_history[job.id] += 1
        self.cancel_timer(job.id)
        old = job.state
        job.replay(now, payload, max_retries)
        self.moved(job, old)
        if job.deduplication_key:
            self.dedup_keys.setdefault(job.deduplication_key, job.id)
        self.push_ready(job)

    def finished(self, job: JobRecord) -> None:
        """Keep a finished job in the history."""
        self.finished_all((job,))

    def finished_all(self, jobs: Sequence[JobRecord]) -> None:
        """Keep finished jobs in the history; forget the oldest beyond its size."""
        if self._dedup_window <= 0:
            for job in jobs:
                if job.deduplication_key:
                    self._release_dedup(job)
        history = self._history
        history.extend([job.id for job in jobs])
        while len(history) > self._max_history:
            self._forget(history.popleft())

    def _forget(self, job_id: str) -> None:
        if self._stale_history[job_id]:
            self._stale_history[job_id] -= 1
            if not self._stale_history[job_id]:
                del self._stale_history[job_id]
            return
        job = self.jobs.get(job_id)
        if job is None or not job.state.is_terminal:
            return  # purged already, or replayed since it finished
        self.remove(job)

    def remove(self, job: MemoryJob) -> None:
        """Delete a job; its entry in a ready queue or the history is skipped later."""
        del self.jobs[job.id]
        self.queue(job.queue).counts[job.state] -= 1
        if job.state is JobState.PENDING:
            self.unready(job)
        elif job.state is JobState.PROCESSING:
            job.state = JobState.CANCELLED
            self.stopped(job)
        self._release_dedup(job)
        self.cancel_timer(job.id)
        job.state = JobState.CANCELLED  # not pending: ready queues drop it

    def _release_dedup(self, job: JobRecord) -> None:
        if self.dedup_keys.get(job.deduplication_key) == job.id:
            del self.dedup_keys[job.deduplication_key]

    # Indexes -----------------------------------------------------------------

    def held(self, index: dict[str, str], names: set[str]) -> dict[str, JobRecord]:
        """The stored jobs ``index`` (``dedup_keys`` or ``requests``) maps each of ``names`` to."""
        found: dict[str, JobRecord] = {}
        for name in names:
            job = self.jobs.get(index.get(name, ""))
            if job is not None:
                found[name] = job
        return found

    def remember_request(self, request_id: str, job_id: str) -> None:
        """Remember which job a request id stored; forget the oldest beyond the limit."""
        # A known id keeps its place in the order, as in an OrderedDict.
        if request_id not in self.requests:
            self._request_order.append(request_id)
        self.requests[request_id] = job_id
        if len(self.requests) > MAX_REQUEST_IDS:
            del self.requests[self._request_order.popleft()]

    def remember_replay(self, request_id: str, count: int) -> None:
        """Remember a ``RetryJobs`` request id's count; forget the oldest beyond the limit."""
        self.replays[request_id] = count
        while len(self.replays) > MAX_REQUEST_IDS:
            del self.replays[next(iter(self.replays))]
