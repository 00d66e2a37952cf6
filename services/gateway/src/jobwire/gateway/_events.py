"""Fan-out of job changes to ``WatchJob`` and ``WatchJobs`` streams.

Whoever changes a job publishes it: the lease state machine on every lease
transition, a provider on the transitions it makes by itself (a delayed job
coming due), the service on enqueue and cancel. Publishing costs one dict
lookup when nobody watches the job, so everything publishes; a batch (an
enqueue, a delivery or ack frame) is published with one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager

from jobwire.gateway._models import JobRecord
from jobwire.v1 import job_pb2


class _Watcher:
    """Whoever a job's changes are pushed to."""

    def push(self, snapshot: job_pb2.Job) -> None:
        raise NotImplementedError


class JobWatch(_Watcher):
    """Latest snapshot of one watched job; see :meth:`JobEvents.watch`."""

    def __init__(self) -> None:
        self._latest: job_pb2.Job | None = None
        self._changed = asyncio.Event()

    def push(self, snapshot: job_pb2.Job) -> None:
        """Record a new state; a slow reader only ever sees the latest one."""
        self._latest = snapshot
        self._changed.set()

    async def next(self) -> job_pb2.Job:
        """Wait for and return the next snapshot."""
        await self._changed.wait()
        self._changed.clear()
        assert self._latest is not None
        return self._latest


class JobEvents:
    """The watchers of each job, and the newest change each has been told of."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[JobWatch]] = {}
        self._seen: dict[str, float] = {}

    def publish(self, job: JobRecord) -> None:
        """Tell the job's watchers about its current state."""
        watchers = self._watchers.get(job.id)
        if watchers:
            self._seen[job.id] = max(self._seen.get(job.id, 0.0), job.update_time)
            snapshot = job.to_proto()
            for watcher in watchers:
                watcher.push(snapshot)

    def publish_all(self, jobs: Iterable[JobRecord]) -> None:
        """:meth:`publish` each of a frame's jobs; one check when nobody watches anything."""
        if self._watchers:
            for job in jobs:
                self.publish(job)

    def publish_if_newer(self, job: JobRecord) -> None:
        """Publish a change read back from storage, unless the watchers know it already.

        For providers that learn of other gateways' changes by looking them up.
        """
        if job.update_time > self._seen.get(job.id, 0.0):
            self.publish(job)

    def seen(self, job: JobRecord) -> None:
        """Note that the watchers start from ``job`` as it is now."""
        if job.id in self._watchers:
            self._seen[job.id] = max(self._seen.get(job.id, 0.0), job.update_time)

    def watched(self) -> Collection[str]:
        """Ids of the jobs someone watches."""
        return self._watchers.keys()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[JobWatch]:
        """Register a watcher for the duration of the ``with`` block."""
        watcher = JobWatch()
        self._watchers.setdefault(job_id, set()).add(watcher)
        try:
            yield watcher
        finally:
            watchers = self._watchers[job_id]
            watchers.discard(watcher)
            if not watchers:
                del self._watchers[job_id]
                self._seen.pop(job_id, None)
