"""What producers ask of the gateway's jobs: enqueue, read, list, cancel, count.

The bottom layer of :class:`~jobwire.gateway._service.JobService`, which
also owns its parts (provider, lease state machine, scheduler, validation,
metrics). Jobs due further ahead than the scheduler's ``delay_threshold``
are held by the scheduler (they survive a restart, and providers such as SQS
cannot delay that long); one deduplication key holds across both stores.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from jobwire.gateway._config import GatewaySettings
from jobwire.gateway._due import DueWatches
from jobwire.gateway._errors import (
    FlowControlUnsupportedError,
    InvalidArgumentError,
    JobNotFoundError,
    PriorityUnsupportedError,
)
from jobwire.gateway._events import JobEvents
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._models import DEFAULT_PRIORITY, JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway._pages import Cursor, decode_token, encode_token, merged_page
from jobwire.gateway._validation import Validator, require_id, validate_queue_name
from jobwire.gateway._workers import WorkerDirectory
from jobwire.gateway.providers import Leases, QueueCounts, QueueProvider, RetryPolicy
from jobwire.gateway.scheduler import Scheduler
from jobwire.v1 import queue_service_pb2

MIN_ID_PREFIX = 8
"""Shortest id prefix that names a job where an id is expected."""


class JobRequests:
    """Validates producers' requests and forwards them to the provider, or to the scheduler.

    ``get_job`` and ``cancel_job`` find the jobs the scheduler holds until
    they are due; ``list_jobs`` and ``stats`` count them in.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        provider: QueueProvider[Any],
        events: JobEvents,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.events = events
        self.metrics = metrics or GatewayMetrics()
        self.validate = Validator(settings.server)
        self.leases = Leases(provider, RetryPolicy(settings.provider.retry), events)
        self.due = DueWatches(events, self.leases.get)
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
        await self.due.aclose()
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
        if not self.provider.supports_priority or not self.provider.supports_flow_control:
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
                    self.events.publish(result[0])  # for watches by selector
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
        """Refuse a priority or a concurrency key the provider would ignore."""
        if job.priority != DEFAULT_PRIORITY and not self.provider.supports_priority:
            raise PriorityUnsupportedError(field_prefix + "priority", self._provider_type)
        if job.concurrency_key and not self.provider.supports_flow_control:
            raise FlowControlUnsupportedError(field_prefix + "concurrency_key", self._provider_type)

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
