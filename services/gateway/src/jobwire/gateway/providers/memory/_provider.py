"""In-process provider: the embedded default. Jobs live in this process only.

The storage hooks on :class:`~._store.MemoryStore`. Leases live in the state
machine above (:mod:`.._leases`); the record itself is the storage, so a
lease's handle is nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Collection, Sequence
from operator import attrgetter

from jobwire.gateway._dedup import DedupRule, lookups
from jobwire.gateway._errors import InvalidPageTokenError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._limits import NO_LIMITS, QueueLimits
from jobwire.gateway._models import REPLAYABLE, JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway._provider_config import MemoryProviderSettings
from jobwire.gateway.providers._flow import Hold, hold_of
from jobwire.gateway.providers._types import Claim, Consumer, Ending, Lease, Purged, QueueCounts
from jobwire.gateway.providers.base import QueueProvider
from jobwire.gateway.providers.memory._store import MemoryJob, MemoryStore

logger = logging.getLogger("jobwire.gateway")


class MemoryProvider(QueueProvider[None]):
    """Queues in this process's memory (``type = "memory"``)."""

    supports_flow_control = True

    def __init__(self, settings: MemoryProviderSettings, events: JobEvents) -> None:
        super().__init__(events, DedupRule(settings.dedup_window.total_seconds()))
        self._store = MemoryStore(events, self.dedup.window, settings.max_history)

    # Jobs --------------------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs, deduplicating by request id and deduplication key."""
        store = self._store
        now = time.time()
        request_ids, keys = lookups(jobs)
        results = self.dedup.admit(
            jobs,
            now,
            functools.partial(MemoryJob.create, now=now),
            by_request=store.held(store.requests, request_ids) if request_ids else None,
            by_key=store.held(store.dedup_keys, keys) if keys else None,
        )
        woken: dict[str, set[str]] = {}  # the types per queue to wake claims for, once
        for new, (job, duplicate) in zip(jobs, results, strict=True):
            if duplicate:
                continue
            assert isinstance(job, MemoryJob)
            job.seq = next(store.order)
            store.jobs[job.id] = job
            queue = store.queue(job.queue)
            queue.counts[job.state] += 1
            if new.request_id:
                store.remember_request(new.request_id, job.id)
            if new.deduplication_key:
                store.dedup_keys[new.deduplication_key] = job.id
            if job.state is JobState.SCHEDULED:
                assert job.schedule_time is not None
                store.wake_at(job, job.schedule_time - now)
            else:
                # Its order number is taken just now: sharing it saves an int per job.
                store.push_ready(job, job.seq, wake=False, queue=queue)
                types = woken.get(job.queue)
                if types is None:
                    types = woken[job.queue] = set()
                types.add(job.type)
        for name, types in woken.items():
            queue = store.queues[name]
            if queue.waiters:
                store.wake(queue, types)
        return results

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job still in memory."""
        return self._store.jobs.get(job_id)

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
        for job in reversed(self._store.jobs.values()):
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
        store = self._store
        job = store.jobs.get(job_id)
        if job is None or job.state.is_terminal:
            return job
        store.cancel_timer(job_id)
        old, now = job.state, time.time()
        job.cancel(message, now)
        store.moved(job, old)
        if old is JobState.PENDING:
            store.unready(job)
        elif old is JobState.PROCESSING:
            store.stopped(job)
        store.finished(job)
        return job

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The live jobs that hold these deduplication keys."""
        now = time.time()
        held = self._store.held(self._store.dedup_keys, set(keys))
        return {key: job for key, job in held.items() if self.dedup.holds(job, now)}

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the per-queue counters kept on every transition."""
        store = self._store
        names = sorted({*store.queues, *store.paused}) if queue is None else [queue]
        now = time.time()
        return [store.counts(name, now) for name in names]

    async def aclose(self) -> None:
        """Stop every timer; the jobs are gone with the process (and the log says how many)."""
        self._store.stop_timers()
        unfinished = self._store.unfinished()
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
        job = self._store.jobs.get(job_id)
        if job is None:
            return None
        if job.state not in REPLAYABLE:
            return job, False
        self._store.replay(job, time.time(), payload, max_retries)
        return job, True

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay every selected dead, failed or cancelled job, once per request id."""
        store = self._store
        if request_id in store.replays:
            return store.replays[request_id]
        now = time.time()
        chosen = [
            job
            for job in selector.among(store.jobs)
            if job.state in REPLAYABLE and selector.matches(job)
        ]
        for job in chosen:
            store.replay(job, now, None, None)
            self.events.publish(job)
        if request_id:
            store.remember_replay(request_id, len(chosen))
        return len(chosen)

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete the selected jobs; say which of them were processing."""
        chosen = [
            job
            for job in selector.among(self._store.jobs)
            if selector.matches(job)
            and (include_processing or job.state is not JobState.PROCESSING)
        ]
        processing = tuple(job.id for job in chosen if job.state is JobState.PROCESSING)
        if not validate_only:
            for job in chosen:
                self._store.remove(job)
        return Purged(len(chosen), processing)

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume deliveries from a queue; a resume wakes its waiting claims."""
        store = self._store
        if paused:
            store.paused.add(queue)
            return
        store.paused.discard(queue)
        for wake in store.queue(queue).waiters:
            if not wake.done():
                wake.set_result(None)

    # Leases ------------------------------------------------------------------

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[None]]:
        """Take ready jobs, parking on a future until an insert resolves it."""
        store = self._store
        loop = asyncio.get_running_loop()
        while True:
            jobs = store.take(consumer, max_jobs)
            if jobs:
                now, worker_id = time.time(), consumer.worker_id
                for job in jobs:
                    job.begin_attempt(job.attempt + 1, worker_id, now)
                # take() takes pending jobs only.
                store.moved_all(jobs, JobState.PENDING)
                return [Claim(job, None) for job in jobs]
            wake: asyncio.Future[None] = loop.create_future()
            queues = [store.queue(name) for name in consumer.queues]
            for queue in queues:
                queue.waiters[wake] = consumer
            # Jobs a rate holds back become admissible with its next token.
            wait = store.rate_wait(consumer)
            timer = None if wait is None else loop.call_later(wait, _resolve, wake)
            try:
                await wake
            finally:
                if timer is not None:
                    timer.cancel()
                for queue in queues:
                    queue.waiters.pop(wake, None)

    async def settle(self, endings: Sequence[Ending[None]]) -> None:
        """Apply each ending: done, retry after its backoff, ready again, or dead."""
        store = self._store
        jobs: list[JobRecord] = []
        finished: list[JobRecord] = []
        for ending in endings:
            job, end = ending.lease.job, ending.end
            assert isinstance(job, MemoryJob)
            if job.state is JobState.PROCESSING:
                job.end_attempt(end)
                jobs.append(job)  # counted below, with the others
                store.stopped(job)
            else:  # purged while its ending was on its way
                old = job.state
                job.end_attempt(end)
                store.moved(job, old)
            if end.state is JobState.FAILED:
                assert end.run_at is not None
                store.wake_at(job, end.run_at - end.time)
            elif end.state is JobState.PENDING:
                store.push_ready(job)
            else:
                finished.append(job)
        store.moved_all(jobs, JobState.PROCESSING)
        if finished:
            store.finished_all(finished)

    # Flow control --------------------------------------------------------------

    async def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Take a queue's limits (this gateway's only); claims held back by old ones wake."""
        store = self._store
        target = store.queue(queue)
        target.configure(limits)
        if limits.empty:
            store.configured.discard(queue)
        else:
            store.configured.add(queue)
        for wake in target.waiters:
            if not wake.done():
                wake.set_result(None)

    async def queue_limits(self, queue: str) -> QueueLimits:
        """One queue's limits."""
        found = self._store.queues.get(queue)
        return found.limits if found is not None else NO_LIMITS

    async def limits(self) -> dict[str, QueueLimits]:
        """The limits of every configured queue."""
        store = self._store
        return {name: store.queue(name).limits for name in sorted(store.configured)}

    async def key_jobs(self, queue: str, key: str) -> list[JobRecord]:
        """A key's pending and processing jobs, oldest first."""
        lane = self._store.queue(queue).lanes.get(key)
        if lane is None:
            return []
        jobs: list[MemoryJob] = [*lane.running.values(), *lane.pending_jobs()]
        jobs.sort(key=attrgetter("seq"))
        return list(jobs)

    async def hold(self, job: JobRecord) -> Hold | None:
        """The limit holding a pending job back now, if one does."""
        queue = self._store.queues.get(job.queue)
        if queue is None or job.state is not JobState.PENDING or not queue.limits.limited:
            return None
        lane = queue.lanes.get(job.concurrency_key) if job.concurrency_key else None
        return hold_of(
            queue.limits,
            job.queue,
            job.concurrency_key,
            len(lane.running) if lane is not None else 0,
            queue.counts[JobState.PROCESSING],
            queue.bucket.available() if queue.bucket is not None else None,
        )


def _resolve(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
