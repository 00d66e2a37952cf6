"""In-process provider: the embedded default. Jobs live in this process only.

Everything happens on the event loop without locks: a method never awaits in
the middle of a state change. Waiting consumers park on futures that an
insert resolves at once; delays and backoffs are ``loop.call_at`` timers, so
nothing polls. Leases live in the state machine above (:mod:`._leases`); the
record itself is the storage, so a lease's handle is nothing.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from jobwire.gateway._dedup import DedupRule, lookups
from jobwire.gateway._errors import InvalidPageTokenError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import REPLAYABLE, JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway._provider_config import MemoryProviderSettings
from jobwire.gateway.providers._types import (
    Claim,
    Consumer,
    Ending,
    Lease,
    Purged,
    QueueCounts,
)
from jobwire.gateway.providers.base import QueueProvider

logger = logging.getLogger("jobwire.gateway")

# Idempotency keys remembered; older ones are forgotten first.
_MAX_REQUEST_IDS = 100_000


@dataclass(slots=True, eq=False)
class _Job(JobRecord):
    # Order numbers kept on the record rather than in a side table: a dict entry
    # or a tuple per job costs several times the two slots.
    seq: int = 0
    """When the job was stored; ``list`` pages by it."""
    ready_order: int = 0
    """When the job last became ready; the oldest ready job is taken first."""


@dataclass(slots=True)
class _Queue:
    # Ready jobs by type and priority, in ready order. Cancelled and purged
    # jobs stay until popped and are skipped then.
    ready: dict[tuple[str, int], deque[_Job]] = field(default_factory=dict)
    waiters: dict[asyncio.Future[None], Consumer] = field(default_factory=dict)
    counts: Counter[JobState] = field(default_factory=Counter)


class MemoryProvider(QueueProvider[None]):
    """Queues in this process's memory (``type = "memory"``)."""

    def __init__(self, settings: MemoryProviderSettings, events: JobEvents) -> None:
        super().__init__(events, DedupRule(settings.dedup_window.total_seconds()))
        self._max_history = settings.max_history
        self._jobs: dict[str, _Job] = {}
        self._history: deque[str] = deque()
        self._queues: dict[str, _Queue] = {}
        self._dedup_keys: dict[str, str] = {}
        # Request id -> job id, and the ids in the order first remembered (an
        # OrderedDict costs about twice the memory per entry).
        self._requests: dict[str, str] = {}
        self._request_order: deque[str] = deque()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._order = itertools.count()
        self._paused: set[str] = set()
        # RetryJobs request id -> count, oldest first.
        self._replays: dict[str, int] = {}
        # History entries of replayed jobs that no longer mean "finished": a
        # replayed job that finishes again is appended again, and its older
        # entry must not forget it early.
        self._stale_history: Counter[str] = Counter()

    # Jobs --------------------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs, deduplicating by request id and deduplication key."""
        now = time.time()
        request_ids, keys = lookups(jobs)
        results = self.dedup.admit(
            jobs,
            now,
            functools.partial(_Job.create, now=now),
            by_request=self._held(self._requests, request_ids) if request_ids else None,
            by_key=self._held(self._dedup_keys, keys) if keys else None,
        )
        woken: dict[str, set[str]] = {}  # the types per queue to wake claims for, once
        for new, (job, duplicate) in zip(jobs, results, strict=True):
            if duplicate:
                continue
            assert isinstance(job, _Job)
            job.seq = next(self._order)
            self._jobs[job.id] = job
            queue = self._queue(job.queue)
            queue.counts[job.state] += 1
            if new.request_id:
                self._remember_request(new.request_id, job.id)
            if new.deduplication_key:
                self._dedup_keys[new.deduplication_key] = job.id
            if job.state is JobState.SCHEDULED:
                assert job.schedule_time is not None
                self._wake_at(job, job.schedule_time - now)
            else:
                # Its order number is taken just now: sharing it saves an int per job.
                self._push_ready(job, job.seq, wake=False, queue=queue)
                types = woken.get(job.queue)
                if types is None:
                    types = woken[job.queue] = set()
                types.add(job.type)
        for name, types in woken.items():
            queue = self._queues[name]
            if queue.waiters:
                self._wake(queue, types)
        return results

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job still in memory."""
        return self._jobs.get(job_id)

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

    async def cancel(
        self, job_id: str, message: str, lease: Lease[None] | None
    ) -> JobRecord | None:
        """Cancel an unfinished job; a finished one is returned unchanged."""
        job = self._jobs.get(job_id)
        if job is None or job.state.is_terminal:
            return job
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        old, now = job.state, time.time()
        job.cancel(message, now)
        self._moved(job, old)
        self._finished(job)
        return job

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The live jobs that hold these deduplication keys."""
        now = time.time()
        held = self._held(self._dedup_keys, set(keys))
        return {key: job for key, job in held.items() if self.dedup.holds(job, now)}

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the per-queue counters kept on every transition."""
        names = sorted({*self._queues, *self._paused}) if queue is None else [queue]
        now = time.time()
        return [self._counts(name, now) for name in names]

    async def aclose(self) -> None:
        """Stop every timer; the jobs are gone with the process (and the log says how many)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        unfinished = sum(
            count
            for queue in self._queues.values()
            for state, count in queue.counts.items()
            if not state.is_terminal
        )
        if unfinished:
            logger.warning(
                "memory provider: %d unfinished jobs dropped (jobs live only while the gateway "
                "runs; a durable provider such as sqs keeps them)",
                unfinished,
            )

    # Operations --------------------------------------------------------------

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Make a dead, failed or cancelled job pending again; others come back unchanged."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.state not in REPLAYABLE:
            return job, False
        self._replay(job, time.time(), payload, max_retries)
        return job, True

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay every selected dead, failed or cancelled job, once per request id."""
        if request_id in self._replays:
            return self._replays[request_id]
        now = time.time()
        chosen = [
            job
            for job in selector.among(self._jobs)
            if job.state in REPLAYABLE and selector.matches(job)
        ]
        for job in chosen:
            self._replay(job, now, None, None)
            self.events.publish(job)
        if request_id:
            self._replays[request_id] = len(chosen)
            while len(self._replays) > _MAX_REQUEST_IDS:
                del self._replays[next(iter(self._replays))]
        return len(chosen)

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete the selected jobs; say which of them were processing."""
        chosen = [
            job
            for job in selector.among(self._jobs)
            if selector.matches(job)
            and (include_processing or job.state is not JobState.PROCESSING)
        ]
        processing = tuple(job.id for job in chosen if job.state is JobState.PROCESSING)
        if not validate_only:
            for job in chosen:
                self._remove(job)
        return Purged(len(chosen), processing)

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume deliveries from a queue; a resume wakes its waiting claims."""
        if paused:
            self._paused.add(queue)
            return
        self._paused.discard(queue)
        for wake in self._queue(queue).waiters:
            if not wake.done():
                wake.set_result(None)

    def _replay(
        self, job: _Job, now: float, payload: bytes | None, max_retries: int | None
    ) -> None:
        if job.state.is_terminal:
            self._stale_history[job.id] += 1
        timer = self._timers.pop(job.id, None)
        if timer is not None:
            timer.cancel()
        old = job.state
        job.replay(now, payload, max_retries)
        self._moved(job, old)
        if job.deduplication_key:
            self._dedup_keys.setdefault(job.deduplication_key, job.id)
        self._push_ready(job)

    # Leases ------------------------------------------------------------------

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[None]]:
        """Take ready jobs, parking on a future until an insert resolves it."""
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._take(consumer, max_jobs)
            if jobs:
                now, worker_id = time.time(), consumer.worker_id
                for job in jobs:
                    job.begin_attempt(job.attempt + 1, worker_id, now)
                # _take takes pending jobs only.
                self._moved_all(jobs, JobState.PENDING)
                return [Claim(job, None) for job in jobs]
            wake: asyncio.Future[None] = loop.create_future()
            queues = [self._queue(name) for name in consumer.queues]
            for queue in queues:
                queue.waiters[wake] = consumer
            try:
                await wake
            finally:
                for queue in queues:
                    queue.waiters.pop(wake, None)

    async def settle(self, endings: Sequence[Ending[None]]) -> None:
        """Apply each ending: done, retry after its backoff, ready again, or dead."""
        jobs: list[JobRecord] = []
        finished: list[JobRecord] = []
        for ending in endings:
            job, end = ending.lease.job, ending.end
            assert isinstance(job, _Job)
            if job.state is JobState.PROCESSING:
                job.end_attempt(end)
                jobs.append(job)  # counted below, with the others
            else:  # purged while its ending was on its way
                old = job.state
                job.end_attempt(end)
                self._moved(job, old)
            if end.state is JobState.FAILED:
                assert end.run_at is not None
                self._wake_at(job, end.run_at - end.time)
            elif end.state is JobState.PENDING:
                self._push_ready(job)
            else:
                finished.append(job)
        self._moved_all(jobs, JobState.PROCESSING)
        if finished:
            self._finished_all(finished)

    # Storage -----------------------------------------------------------------

    def _moved(self, job: JobRecord, old: JobState) -> None:
        counts = self._queue(job.queue).counts
        counts[old] -= 1
        counts[job.state] += 1

    def _moved_all(self, jobs: Sequence[JobRecord], old: JobState) -> None:
        """Count jobs that all left state ``old`` (one queue lookup per run of a queue)."""
        name: str | None = None
        counts: Counter[JobState] = Counter()
        for job in jobs:
            if job.queue != name:
                name = job.queue
                counts = self._queue(name).counts
            counts[old] -= 1
            counts[job.state] += 1

    def _push_ready(
        self, job: _Job, order: int | None = None, *, wake: bool = True, queue: _Queue | None = None
    ) -> None:
        if queue is None:
            queue = self._queue(job.queue)
        key = (job.type, job.priority)
        ready = queue.ready.get(key)
        if ready is None:
            ready = queue.ready[key] = deque()
        job.ready_order = next(self._order) if order is None else order
        ready.append(job)
        if wake:
            for waiter, consumer in queue.waiters.items():
                if not waiter.done() and consumer.accepts(job.type):
                    waiter.set_result(None)

    @staticmethod
    def _wake(queue: _Queue, job_types: Collection[str]) -> None:
        """Wake the claims waiting on ``queue`` that accept one of ``job_types``."""
        for wake, consumer in queue.waiters.items():
            if not wake.done() and any(consumer.accepts(t) for t in job_types):
                wake.set_result(None)

    def _wake_at(self, job: _Job, delay: float) -> None:
        self._timers[job.id] = asyncio.get_running_loop().call_later(
            max(0.0, delay), self._make_ready, job
        )

    def _make_ready(self, job: _Job) -> None:
        self._timers.pop(job.id, None)
        if job.state in (JobState.SCHEDULED, JobState.FAILED):
            old = job.state
            job.state = JobState.PENDING
            job.update_time = time.time()
            self._moved(job, old)
            self._push_ready(job)
            self.events.publish(job)

    def _take(self, consumer: Consumer, max_jobs: int) -> list[_Job]:
        candidates = [
            ready
            for name in consumer.queues
            if name not in self._paused
            for (job_type, _), ready in self._queue(name).ready.items()
            if ready and consumer.accepts(job_type)
        ]
        taken: list[_Job] = []
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

    def _finished(self, job: JobRecord) -> None:
        self._finished_all((job,))

    def _finished_all(self, jobs: Sequence[JobRecord]) -> None:
        """Keep finished jobs in the history; forget the oldest beyond its size."""
        if self.dedup.window <= 0:
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
        job = self._jobs.get(job_id)
        if job is None or not job.state.is_terminal:
            return  # purged already, or replayed since it finished
        self._remove(job)

    def _remove(self, job: _Job) -> None:
        """Delete a job; its entry in a ready queue or the history is skipped later."""
        del self._jobs[job.id]
        self._queue(job.queue).counts[job.state] -= 1
        self._release_dedup(job)
        timer = self._timers.pop(job.id, None)
        if timer is not None:
            timer.cancel()
        job.state = JobState.CANCELLED  # not pending: ready queues drop it

    def _release_dedup(self, job: JobRecord) -> None:
        if self._dedup_keys.get(job.deduplication_key) == job.id:
            del self._dedup_keys[job.deduplication_key]

    def _held(self, index: dict[str, str], names: set[str]) -> dict[str, JobRecord]:
        """The stored jobs ``index`` maps each of ``names`` to."""
        found: dict[str, JobRecord] = {}
        for name in names:
            job = self._jobs.get(index.get(name, ""))
            if job is not None:
                found[name] = job
        return found

    def _remember_request(self, request_id: str, job_id: str) -> None:
        # A known id keeps its place in the order, as in an OrderedDict.
        if request_id not in self._requests:
            self._request_order.append(request_id)
        self._requests[request_id] = job_id
        if len(self._requests) > _MAX_REQUEST_IDS:
            del self._requests[self._request_order.popleft()]

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue

    def _counts(self, name: str, now: float) -> QueueCounts:
        queue = self._queues.get(name) or _Queue()
        oldest: float | None = None
        types: list[str] = []
        for (job_type, _), ready in queue.ready.items():
            while ready and ready[0].state is not JobState.PENDING:
                ready.popleft()  # drop cancelled entries so the head is live
            if ready:
                types.append(job_type)
                head = ready[0]
                since = head.update_time
                oldest = since if oldest is None else min(oldest, since)
        return QueueCounts(
            queue=name,
            by_state={state: queue.counts[state] for state in JobState},
            oldest_pending_age=0.0 if oldest is None else max(0.0, now - oldest),
            pending_types=frozenset(types),
            paused=name in self._paused,
        )
