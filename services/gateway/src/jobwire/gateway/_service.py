"""The domain the servicers talk to: validation, routing, leases, watching.

:class:`JobService` is the only thing the gRPC servicers call. It validates
requests (:mod:`._validation`), sends jobs due soon to the provider and jobs
due later to the scheduler, drives the provider through the lease state
machine (:class:`~jobwire.gateway.providers.Leases`), counts metrics and
publishes changes to ``WatchJob`` streams.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from jobwire.gateway._config import GatewaySettings
from jobwire.gateway._errors import (
    InvalidArgumentError,
    JobNotFoundError,
    JobNotRetryableError,
    PriorityUnsupportedError,
)
from jobwire.gateway._events import JobEvents, JobsWatch, JobWatch
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._models import (
    DEFAULT_PRIORITY,
    REPLAYABLE,
    JobFilter,
    JobRecord,
    JobState,
    NewJob,
    states_text,
)
from jobwire.gateway._pages import Cursor, decode_token, encode_token, merged_page
from jobwire.gateway._validation import (
    MAX_RETRIES_LIMIT,
    Validator,
    job_selector,
    require_id,
    validate_queue_name,
)
from jobwire.gateway._workers import WorkerDirectory
from jobwire.gateway.providers import (
    AckRequest,
    Consumer,
    Delivery,
    LeaseOutcome,
    Leases,
    NackRequest,
    QueueCounts,
    QueueProvider,
    RetryPolicy,
    WorkerInfo,
)
from jobwire.gateway.scheduler import Scheduler
from jobwire.v1 import job_pb2, queue_service_pb2, worker_service_pb2

MIN_ID_PREFIX = 8
"""Shortest id prefix that names a job where an id is expected."""
MAX_WATCHED = 100_000
"""Most jobs one ``WatchJobs`` stream follows."""


class JobService:
    """Validates requests and forwards them to the provider, or to the scheduler.

    Jobs due further ahead than the scheduler's ``delay_threshold`` are held
    by the scheduler (they survive a restart, and providers such as SQS cannot
    delay that long); ``get_job`` and ``cancel_job`` find them there until
    they are due. ``list_jobs`` and ``stats`` answer for the provider's jobs only.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        provider: QueueProvider[Any],
        events: JobEvents,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.provider = provider
        self.events = events
        self.metrics = metrics or GatewayMetrics()
        self.validate = Validator(settings.server)
        self.leases = Leases(provider, RetryPolicy(settings.provider.retry), events)
        self.workers = WorkerDirectory(provider.workers, self.leases)
        self._provider_type = settings.provider.type
        self.scheduler = (
            Scheduler(settings.scheduler, self, metrics=self.metrics)
            if settings.scheduler.enabled
            else None
        )

    @property
    def max_native_delay(self) -> float | None:
        """Longest delay the provider holds itself (the scheduler holds longer ones)."""
        return self.provider.max_native_delay

    async def open(self) -> None:
        """Open the provider, then start the scheduler."""
        await self.provider.open()
        if self.scheduler is not None:
            await self.scheduler.start()

    async def aclose(self) -> None:
        """Stop the scheduler, the lease timers and the provider."""
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.workers.stop()
        await self.leases.aclose()
        await self.provider.aclose()

    # Producer side -----------------------------------------------------------

    async def enqueue(
        self, requests: Sequence[queue_service_pb2.EnqueueJobRequest], *, batch: bool
    ) -> list[tuple[JobRecord, bool]]:
        """Validate every request first, then enqueue them all."""
        self.validate.batch_size(len(requests), batch=batch)
        now = time.time()
        new_job = self.validate.new_job
        jobs = [
            new_job(req, now, f"requests[{i}]." if batch else "") for i, req in enumerate(requests)
        ]
        if not self.provider.supports_priority:
            for i, job in enumerate(jobs):
                self._check_priority(job, f"requests[{i}]." if batch else "")
        if self.scheduler is None:
            return await self.submit(jobs)
        threshold = now + self.scheduler.delay_threshold
        later = [job.schedule_time is not None and job.schedule_time > threshold for job in jobs]
        if not any(later) and not any(job.deduplication_key for job in jobs):
            # The common batch: all due now, no key to look up in the scheduler.
            return await self.submit(jobs)
        results: list[tuple[JobRecord, bool] | None] = [None] * len(jobs)
        # One deduplication key holds across both stores: jobs due now look at
        # the scheduler's keys, then jobs held for later at the provider's,
        # those just stored included. (Two enqueues racing into different
        # stores can still both win; within one store the rule is exact.)
        now_jobs = [i for i, held in enumerate(later) if not held]
        stored = await self._unless_held(jobs, now_jobs, results, self.scheduler.key_holders)
        if stored:
            submitted = await self.submit([jobs[i] for i in stored])
            for i, result in zip(stored, submitted, strict=True):
                results[i] = result
        later_jobs = [i for i, held in enumerate(later) if held]
        kept = await self._unless_held(jobs, later_jobs, results, self.provider.key_holders)
        if kept:
            for i, result in zip(
                kept, await self.scheduler.hold([jobs[i] for i in kept]), strict=True
            ):
                results[i] = result
                if not result[1]:
                    self.metrics.enqueued(result[0])
        return [result for result in results if result is not None]

    @staticmethod
    async def _unless_held(
        jobs: Sequence[NewJob],
        indexes: list[int],
        results: list[tuple[JobRecord, bool] | None],
        holders_of: Callable[[Collection[str]], Awaitable[dict[str, JobRecord]]],
    ) -> list[int]:
        """Fill in the jobs whose key another store holds; return the others' indexes."""
        keys = {jobs[i].deduplication_key for i in indexes if jobs[i].deduplication_key}
        holders = await holders_of(keys) if keys else {}
        free = []
        for i in indexes:
            holder = holders.get(jobs[i].deduplication_key)
            if holder is not None:
                results[i] = (holder, True)
            else:
                free.append(i)
        return free

    async def submit(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store validated jobs in the provider (the scheduler's hand-off comes here too)."""
        results = await self.provider.insert(jobs)
        stored = [job for job, deduplicated in results if not deduplicated]
        self.metrics.enqueued_all(stored)
        self.events.publish_all(stored)
        return results

    def new_job(
        self, request: queue_service_pb2.EnqueueJobRequest, *, field_prefix: str = ""
    ) -> NewJob:
        """Validate ``request`` as an enqueue would; errors name ``field_prefix + field``."""
        job = self.validate.new_job(request, time.time(), field_prefix)
        self._check_priority(job, field_prefix)
        return job

    def _check_priority(self, job: NewJob, field_prefix: str) -> None:
        """Refuse a priority the provider would ignore."""
        if job.priority != DEFAULT_PRIORITY and not self.provider.supports_priority:
            raise PriorityUnsupportedError(field_prefix + "priority", self._provider_type)

    async def get_job(self, job_id: str) -> JobRecord:
        """Return one job, from the provider or, while it waits, from the scheduler.

        ``job_id`` may also be a unique prefix of at least
        :data:`MIN_ID_PREFIX` characters of the id (what an operator copies
        from a narrow table); an exact id always wins.
        """
        job = await self.leases.get(require_id(job_id))
        if job is None and self.scheduler is not None:
            job = await self.scheduler.get_job(job_id)
        return job if job is not None else await self._by_prefix(job_id)

    async def resolve_id(self, job_id: str) -> str:
        """The full id of the job ``job_id`` names (an id or a unique prefix of one)."""
        return (await self.get_job(job_id)).id

    async def _by_prefix(self, prefix: str) -> JobRecord:
        if len(prefix) < MIN_ID_PREFIX:
            raise JobNotFoundError(prefix)
        where = JobFilter(id_prefix=prefix)
        found = {job.id: job for job in (await self.leases.list_jobs(where, 2, None))[0]}
        if self.scheduler is not None:
            found.update((job.id, job) for job in await self.scheduler.list_jobs(where, 2, None))
        if not found:
            raise JobNotFoundError(prefix)
        if len(found) > 1:
            raise InvalidArgumentError(
                "id",
                f"{prefix!r} starts several job ids ({', '.join(sorted(found))}); "
                "give more characters",
            )
        [job] = found.values()
        return job

    async def list_jobs(
        self, request: queue_service_pb2.ListJobsRequest
    ) -> tuple[list[JobRecord], str]:
        """Return a page of jobs, wherever they are held, and the token of the next page."""
        where = self.validate.job_filter(request)
        limit = self.validate.page_size(request.page_size)
        cursor = decode_token(request.page_token, where) if request.page_token else Cursor()

        async def provider(count: int, at: str | None) -> tuple[list[JobRecord], str | None]:
            return await self.leases.list_jobs(where, count, at)

        async def held(count: int, after: tuple[float, str] | None) -> list[JobRecord]:
            assert self.scheduler is not None
            return await self.scheduler.list_jobs(where, count, after)

        jobs, following = await merged_page(
            limit, cursor, provider, held if self.scheduler is not None else None
        )
        return jobs, "" if following is None else encode_token(following, where)

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        """Cancel one job."""
        if len(reason) > 1024:
            raise InvalidArgumentError("reason", "at most 1024 characters")
        job_id = await self.resolve_id(job_id)
        try:
            return await self.leases.cancel(require_id(job_id), reason)
        except JobNotFoundError:
            held = await self.scheduler.cancel_job(job_id, reason) if self.scheduler else None
            if held is not None:
                self.events.publish(held)
                return held
        # Unknown to the scheduler too (NOT_FOUND), or handed over to the
        # provider between the two calls.
        return await self.leases.cancel(job_id, reason)

    async def stats(self, queue: str) -> list[QueueCounts]:
        """Counts of one queue or of all, the jobs the scheduler holds included."""
        name = validate_queue_name(queue, "queue") if queue else None
        rows = {row.queue: row for row in await self.leases.stats(name)}
        held = await self.scheduler.counts(name) if self.scheduler is not None else {}
        for queue_name, by_state in held.items():
            row = rows.get(queue_name)
            if row is None:
                row = rows[queue_name] = QueueCounts(queue_name, dict.fromkeys(JobState, 0), 0.0)
            for state, count in by_state.items():
                row.by_state[state] = row.by_state.get(state, 0) + count
        return [rows[key] for key in sorted(rows)]

    # Operators ---------------------------------------------------------------

    async def retry_job(self, request: queue_service_pb2.RetryJobRequest) -> JobRecord:
        """Replay one dead, failed or cancelled job, optionally with a new payload."""
        job_id = require_id(request.id)
        payload = request.payload if request.HasField("payload") else None
        if payload is not None:
            self.validate.payload(payload, "payload")
        max_retries = request.max_retries if request.HasField("max_retries") else None
        if max_retries is not None and not 0 <= max_retries <= MAX_RETRIES_LIMIT:
            raise InvalidArgumentError("max_retries", f"must be between 0 and {MAX_RETRIES_LIMIT}")
        return await self.leases.replay(job_id, payload, max_retries)

    async def retry_jobs(self, request: queue_service_pb2.RetryJobsRequest) -> int:
        """Replay every selected dead, failed or cancelled job (dead ones by default)."""
        selector = job_selector(request.selector)
        if not selector.states:
            selector = replace(selector, states=frozenset({JobState.DEAD}))
        elif not selector.states <= REPLAYABLE:
            raise InvalidArgumentError(
                "selector.states", "only dead, failed and cancelled jobs can be retried"
            )
        elif not selector.states <= self.provider.replayable:
            names = states_text(self.provider.replayable)
            raise JobNotRetryableError("", "", names)
        if len(request.request_id) > 256:
            raise InvalidArgumentError("request_id", "at most 256 characters")
        return await self.provider.replay_jobs(selector, request.request_id)

    async def purge_jobs(self, request: queue_service_pb2.PurgeJobsRequest) -> int:
        """Delete the selected jobs, or count them with ``validate_only``."""
        selector = job_selector(request.selector)
        if selector.empty and not request.all:
            raise InvalidArgumentError(
                "selector", "is empty: name a queue, type, state, error or time range, or set all"
            )
        if JobState.PROCESSING in selector.states and not request.include_processing:
            raise InvalidArgumentError(
                "selector.states",
                "processing jobs are purged only with include_processing (their leases are"
                " revoked)",
            )
        return await self.leases.purge(
            selector,
            include_processing=request.include_processing,
            validate_only=request.validate_only,
        )

    async def pause_queue(self, queue: str, paused: bool) -> QueueCounts:
        """Pause or resume deliveries from one queue; return its counts."""
        if not queue:
            raise InvalidArgumentError("queue", "is required")
        name = validate_queue_name(queue, "queue")
        await self.provider.set_paused(name, paused)
        [row] = await self.stats(name)
        return row

    async def list_workers(self, queue: str) -> list[WorkerInfo]:
        """Worker streams of every gateway sharing the provider."""
        name = validate_queue_name(queue, "queue") if queue else ""
        return await self.workers.list(name)

    async def drain_worker(self, worker_id: str, session_id: str) -> int:
        """Ask a worker's streams to finish their jobs and disconnect, on any gateway."""
        if not worker_id:
            raise InvalidArgumentError("worker_id", "is required (see ListWorkers)")
        return await self.workers.drain(worker_id, session_id)

    @asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[tuple[JobRecord, JobWatch]]:
        """The job as it is now, and a watch of its later changes."""
        job_id = await self.resolve_id(job_id)
        # Watch before reading, so that no change between the two is missed.
        with self.events.watch(job_id) as watch:
            job = await self.get_job(job_id)
            self.events.seen(job)
            yield job, watch

    @asynccontextmanager
    async def watch_many(
        self, job_ids: Sequence[str]
    ) -> AsyncIterator[tuple[list[JobRecord], JobsWatch]]:
        """The jobs as they are now (repeated ids once), and one watch of all their changes."""
        if not job_ids:
            raise InvalidArgumentError("ids", "is required: the ids of the jobs to watch")
        if len(job_ids) > MAX_WATCHED:
            raise InvalidArgumentError(
                "ids", f"holds {len(job_ids)} ids; at most {MAX_WATCHED} per stream"
            )
        given = list(dict.fromkeys(job_ids))
        # Watch before reading, so that no change between the two is missed.
        with self.events.watch_many(given) as watch:
            jobs = [await self.get_job(job_id) for job_id in given]
            # Prefixes name their job only now: watch it by id, then read it again.
            named = [i for i, job in enumerate(jobs) if job.id != given[i]]
            if named:
                self.events.add(watch, [jobs[i].id for i in named])
                for i in named:
                    jobs[i] = await self.get_job(jobs[i].id)
            unique = list({job.id: job for job in jobs}.values())
            for job in unique:
                self.events.seen(job)
            yield unique, watch

    # Worker side -------------------------------------------------------------

    def consumer(self, frame: worker_service_pb2.StreamJobsRequest) -> Consumer:
        """Validate a stream's first frame; return the consumer it opens."""
        return self.validate.consumer(frame)

    def connect(self, consumer: Consumer) -> None:
        """Register a consumer before its first :meth:`receive`."""
        self.leases.connect(consumer)

    async def disconnect(self, consumer: Consumer) -> None:
        """Forget a consumer; its jobs are available again at once, attempt counted."""
        await self.leases.disconnect(consumer)

    def in_use(self, consumer: Consumer) -> int:
        """Credits the consumer uses."""
        return self.leases.in_use(consumer)

    async def receive(self, consumer: Consumer, max_jobs: int) -> list[Delivery]:
        """Lease up to ``max_jobs`` jobs, waiting until one is ready."""
        return await self.leases.receive(consumer, max_jobs)

    async def ack(self, consumer: Consumer, items: Sequence[AckRequest]) -> list[LeaseOutcome]:
        """Complete leased jobs."""
        return await self.leases.ack(consumer, items)

    async def nack(self, consumer: Consumer, items: Sequence[NackRequest]) -> list[LeaseOutcome]:
        """Record failed attempts."""
        return await self.leases.nack(consumer, items)

    async def extend(
        self, consumer: Consumer, lease_ids: Sequence[str], duration: float
    ) -> list[tuple[str, float | None]]:
        """Extend leases; None for a lease the consumer does not hold."""
        return await self.leases.extend(consumer, lease_ids, duration)

    async def progress(
        self, consumer: Consumer, lease_id: str, progress: job_pb2.JobProgress
    ) -> bool:
        """Record a leased job's progress; False for a lease the consumer does not hold."""
        return await self.leases.progress(consumer, lease_id, progress)
