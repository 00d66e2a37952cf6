"""The domain the servicers talk to: validation, routing, leases, watching.

:class:`JobService` is the only thing the gRPC servicers call. It validates
requests (:mod:`._validation`), sends jobs due soon to the provider and jobs
due later to the scheduler, drives the provider through the lease state
machine (:class:`~jobwire.gateway.providers.Leases`), counts metrics and
publishes changes to ``WatchJob`` streams. Its layers, one concept each:
producers' requests (:mod:`._job_requests`: enqueue, read, list, cancel,
count, and the parts the service owns), operators' requests
(:mod:`._operator_requests`), and here watching and the worker side.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

from jobwire.gateway._errors import InvalidArgumentError
from jobwire.gateway._events import JobsWatch, JobWatch
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobFilter, JobRecord
from jobwire.gateway._operator_requests import OperatorRequests
from jobwire.gateway._selected import NewElsewhere, existing
from jobwire.gateway._validation import watch_selector
from jobwire.gateway.providers import (
    AckRequest,
    Consumer,
    Delivery,
    LeaseOutcome,
    NackRequest,
)
from jobwire.v1 import job_pb2, queue_service_pb2, worker_service_pb2

MAX_WATCHED = 100_000
"""Most jobs one ``WatchJobs`` stream follows."""


class JobService(OperatorRequests):
    """Validates requests and forwards them to the provider, or to the scheduler.

    Jobs due further ahead than the scheduler's ``delay_threshold`` are held
    by the scheduler (they survive a restart, and providers such as SQS cannot
    delay that long); reads, cancellations and counts find them there until
    they are due.

    Args:
        settings: the gateway's settings (server limits, provider, scheduler).
        provider: the queue backend.
        events: where job changes are published to ``WatchJob`` streams.
        metrics: the gateway's metrics (a private registry when None).
    """

    # Watching ----------------------------------------------------------------

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

    @asynccontextmanager
    async def watch_selected(
        self, message: queue_service_pb2.JobSelector, *, only_new: bool
    ) -> AsyncIterator[tuple[list[JobRecord], JobsWatch]]:
        """The jobs ``message`` matches now, and one watch of every matching job's changes.

        With ``only_new`` no job matches now: only jobs created from now on do.
        """
        selector = watch_selector(message)
        began = time.time()
        if only_new:
            selector = replace(selector, created_after=max(selector.created_after or 0.0, began))
        # Watch before reading, so that no change between the two is missed.
        with self.events.watch_selected(selector) as watch:
            jobs = (
                []
                if only_new
                else await existing(
                    selector, self.leases.list_jobs, self._held_page(), self.get_known
                )
            )
            self.events.follow(watch, jobs)
            async with self._looking_elsewhere(selector, began):
                yield jobs, watch

    def _held_page(
        self,
    ) -> Callable[[JobFilter, int, tuple[float, str] | None], Awaitable[list[JobRecord]]] | None:
        return None if self.scheduler is None else self.scheduler.list_jobs

    async def get_known(self, job_id: str) -> JobRecord | None:
        """The job with this full id, wherever it is held; None when unknown."""
        job = await self.leases.get(job_id)
        if job is None and self.scheduler is not None:
            job = await self.scheduler.get_job(job_id)
        return job

    @asynccontextmanager
    async def _looking_elsewhere(self, selector: JobSelector, began: float) -> AsyncIterator[None]:
        """Look for jobs other gateways enqueue, when other gateways share the backend."""
        interval = self.provider.look_interval
        if interval is None or selector.ids:
            yield
            return
        looking = NewElsewhere(selector, self.leases.list_jobs, self.events, interval, since=began)
        task = asyncio.get_running_loop().create_task(looking.run(), name="jobwire-watch-look")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
