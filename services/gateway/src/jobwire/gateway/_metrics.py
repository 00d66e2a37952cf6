"""Prometheus metrics of one gateway, served over HTTP when configured.

Each gateway has its own registry, so several gateways in one process (tests,
the embedded gateway) never share or double-register series. Labels are the
queue and the job type only: job and worker ids would grow without bound.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobwire.gateway._models import JobRecord, NewJob
from jobwire.gateway.providers import QueueCounts

logger = logging.getLogger("jobwire.gateway")
# One DEBUG line per job transition, WARNING per failed attempt, with the
# job's fields as `extra` so that JSON logs carry them as keys.
jobs_logger = logging.getLogger("jobwire.gateway.jobs")

_JOB_LABELS = ("queue", "type")
# Seconds; jobs range from milliseconds to many minutes.
_BUCKETS = (0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 60, 300, 1800, float("inf"))


class GatewayMetrics:
    """The gateway's counters, gauges and histograms, updated at job transitions.

    The transition methods also write the job's log line (``jobwire.gateway.jobs``).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.enqueued_total = Counter(
            "jobwire_jobs_enqueued", "Jobs accepted.", _JOB_LABELS, registry=registry
        )
        self.completed = Counter(
            "jobwire_jobs_completed", "Jobs acked by a worker.", _JOB_LABELS, registry=registry
        )
        self.failed = Counter(
            "jobwire_jobs_failed", "Failed attempts (nacks).", _JOB_LABELS, registry=registry
        )
        self.dead = Counter(
            "jobwire_jobs_dead",
            "Jobs nacked with no retry left or not retryable.",
            _JOB_LABELS,
            registry=registry,
        )
        self.redeliveries = Counter(
            "jobwire_job_redeliveries",
            "Deliveries of attempts after the first.",
            _JOB_LABELS,
            registry=registry,
        )
        self.lease_expiries = Counter(
            "jobwire_lease_expiries", "Leases that ran out before an answer.", registry=registry
        )
        self.in_flight = Gauge(
            "jobwire_jobs_in_flight",
            "Jobs leased to workers and not yet answered.",
            registry=registry,
        )
        self.workers = Gauge(
            "jobwire_workers_connected", "Open worker sessions.", registry=registry
        )
        self.credits = Gauge(
            "jobwire_worker_credits",
            "Credits granted by the open worker sessions.",
            registry=registry,
        )
        self.handler_duration = Histogram(
            "jobwire_job_handler_duration_seconds",
            "From delivery to the worker's ack or nack.",
            _JOB_LABELS,
            buckets=_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "jobwire_job_queue_wait_seconds",
            "From when a job was due to its first delivery.",
            _JOB_LABELS,
            buckets=_BUCKETS,
            registry=registry,
        )
        self.scheduler_fires = Counter(
            "jobwire_scheduler_fires",
            "Due scheduled jobs and schedule occurrences handed to the queue.",
            _JOB_LABELS,
            registry=registry,
        )
        self.scheduler_lateness = Histogram(
            "jobwire_scheduler_lateness_seconds",
            "From a schedule occurrence's fire time to its hand-over.",
            _JOB_LABELS,
            buckets=_BUCKETS,
            registry=registry,
        )
        # The labelled series the job transitions update, each looked up once:
        # ``labels()`` checks the values and takes a lock on every call.
        self._enqueued = functools.cache(self.enqueued_total.labels)
        self._completed = functools.cache(self.completed.labels)
        self._failed = functools.cache(self.failed.labels)
        self._dead = functools.cache(self.dead.labels)
        self._redeliveries = functools.cache(self.redeliveries.labels)
        self._handler_duration = functools.cache(self.handler_duration.labels)
        self._queue_wait = functools.cache(self.queue_wait.labels)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def serve(self, listen: str, stats: Callable[[], Awaitable[list[QueueCounts]]]) -> str:
        """Serve ``/metrics`` on ``listen`` (``HOST:PORT``, port 0 for a free one).

        Call from the gateway's event loop. Queue depths come from ``stats``,
        run on that loop once per scrape, so they cost nothing between scrapes.

        Returns:
            The ``HOST:PORT`` actually bound.
        """
        host, _, port = listen.rpartition(":")
        self.registry.register(_QueueDepth(stats, asyncio.get_running_loop()))
        self._server, self._thread = start_http_server(int(port), host, self.registry)
        bound = f"{host}:{self._server.server_port}"
        logger.info("jobwire gateway metrics on http://%s/metrics", bound)
        return bound

    def close(self) -> None:
        """Stop the HTTP endpoint, if serving."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = self._thread = None

    def enqueued(self, job: JobRecord) -> None:
        """Count a newly accepted job."""
        self._enqueued(job.queue, job.type).inc()
        _log(logging.DEBUG, job, "", "enqueued")

    def enqueued_all(self, jobs: Sequence[JobRecord]) -> None:
        """Count newly accepted jobs: one counter step per queue and type."""
        if not jobs:
            return
        if jobs_logger.isEnabledFor(logging.DEBUG):
            for job in jobs:
                _log(logging.DEBUG, job, "", "enqueued")
        counts: dict[tuple[str, str], int] = {}
        for job in jobs:
            key = (job.queue, job.type)
            counts[key] = counts.get(key, 0) + 1
        for (queue, job_type), count in counts.items():
            self._enqueued(queue, job_type).inc(count)

    def delivered_all(self, jobs: Sequence[JobRecord], now: float, worker_id: str) -> None:
        """Count the deliveries of one frame to ``worker_id`` at epoch time ``now``."""
        if not jobs:
            return
        self.in_flight.inc(len(jobs))
        debug = jobs_logger.isEnabledFor(logging.DEBUG)
        for job in jobs:
            if debug:
                _log(logging.DEBUG, job, worker_id, "delivered")
            if job.attempt > 1:
                self._redeliveries(job.queue, job.type).inc()
            else:
                due = job.schedule_time if job.schedule_time is not None else job.create_time
                self._queue_wait(job.queue, job.type).observe(max(0.0, now - due))

    def scheduled(self, job: NewJob, fire_time: datetime | None, now: datetime) -> None:
        """Count a scheduled job handed to the queue; ``fire_time`` for occurrences."""
        labels = (job.queue, job.type)
        self.scheduler_fires.labels(*labels).inc()
        if fire_time is not None:
            lateness = (now - fire_time).total_seconds()
            self.scheduler_lateness.labels(*labels).observe(max(0.0, lateness))

    def answered(
        self, job: JobRecord, seconds: float, worker_id: str, *, ok: bool, dead: bool = False
    ) -> None:
        """Count a worker's ack (``ok``) or nack of ``job``, ``seconds`` after delivery."""
        queue, job_type = job.queue, job.type
        self.in_flight.dec()
        self._handler_duration(queue, job_type).observe(seconds)
        if ok:
            self._completed(queue, job_type).inc()
            _log(logging.DEBUG, job, worker_id, "completed")
        else:
            self._failed(queue, job_type).inc()
            _log(logging.WARNING, job, worker_id, "dead" if dead else "failed, will retry")
            if dead:
                self._dead(queue, job_type).inc()


def _log(level: int, job: JobRecord, worker_id: str, transition: str) -> None:
    if jobs_logger.isEnabledFor(level):
        fields = {
            "job_id": job.id,
            "job_type": job.type,
            "queue": job.queue,
            "attempt": job.attempt,
            "worker_id": worker_id,
        }
        jobs_logger.log(
            level,
            "job %s (%s) attempt %d %s",
            job.id,
            job.type,
            job.attempt,
            transition,
            extra=fields,
        )


class _QueueDepth(Collector):
    """``jobwire_queue_jobs{queue,state}``: the provider's counts at scrape time."""

    def __init__(
        self,
        stats: Callable[[], Awaitable[list[QueueCounts]]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._stats = stats
        self._loop = loop

    def describe(self) -> list[Metric]:
        # Without this the registry would describe by collecting, i.e. block
        # the event loop on a coroutine scheduled on that same loop.
        return []

    async def _counts(self) -> list[QueueCounts]:
        return await self._stats()

    def collect(self) -> Iterator[Metric]:
        # Scrapes run on the HTTP server's thread; the provider lives on the loop.
        counts = asyncio.run_coroutine_threadsafe(self._counts(), self._loop).result(timeout=10)
        family = GaugeMetricFamily(
            "jobwire_queue_jobs", "Jobs per queue and state.", labels=("queue", "state")
        )
        for row in counts:
            for state, count in row.by_state.items():
                family.add_metric((row.queue, state.name.lower()), count)
        yield family
