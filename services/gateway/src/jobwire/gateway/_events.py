"""Fan-out of job changes to ``WatchJob`` and ``WatchJobs`` streams.

Whoever changes a job publishes it: the lease state machine on every lease
transition, a provider on the transitions it makes by itself (a delayed job
coming due), the service on enqueue and cancel, and :mod:`._due` for a
delayed job that comes due with no write (a row whose ``run_at`` passes).
Publishing costs one dict lookup when nobody watches the job, so everything
publishes; a batch (an enqueue, a delivery or ack frame) is published with
one call.

A watch by selector (``WatchJobs`` with a ``selector``) sees every published
job its selector matches. The unfinished jobs it follows are also registered
by id, so that providers that read back the watched jobs' changes made
through other gateways (:meth:`JobEvents.watched`) read them too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager

from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobRecord
from jobwire.v1 import job_pb2


class _Watcher:
    """Whoever a job's changes are pushed to."""

    def push(self, job: JobRecord) -> None:
        raise NotImplementedError


class JobWatch(_Watcher):
    """Latest snapshot of one watched job; see :meth:`JobEvents.watch`."""

    def __init__(self) -> None:
        self._latest: job_pb2.Job | None = None
        self._changed = asyncio.Event()

    def push(self, job: JobRecord) -> None:
        """Record a new state; a slow reader only ever sees the latest one."""
        self._latest = job.to_proto()
        self._changed.set()

    async def next(self) -> job_pb2.Job:
        """Wait for and return the next snapshot."""
        await self._changed.wait()
        self._changed.clear()
        assert self._latest is not None
        return self._latest


class JobsWatch(_Watcher):
    """Latest snapshot of each of many watched jobs that changed; see :meth:`JobEvents.watch_many`.

    Changes gather until the reader takes them: a reader that writes one frame
    while many jobs change sends them all in the next one. It keeps the
    records, not messages: a job that changes several times between two
    frames is written once, as it is when the frame is built.
    """

    def __init__(self) -> None:
        self.job_ids: list[str] = []
        """The ids it is registered for (see :meth:`JobEvents.add`)."""
        self._changes: dict[str, JobRecord] = {}
        self._changed = asyncio.Event()

    def push(self, job: JobRecord) -> None:
        """Record that a job changed; only its latest record is kept until taken."""
        self._changes[job.id] = job
        self._changed.set()

    async def next(self) -> list[JobRecord]:
        """Wait for changes and return the latest record of each changed job."""
        await self._changed.wait()
        self._changed.clear()
        changes, self._changes = self._changes, {}
        return list(changes.values())


class JobEvents:
    """The watchers of each job, and the newest change each has been told of."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[_Watcher]] = {}
        self._seen: dict[str, float] = {}
        self.on_waiting: Callable[[JobRecord], None] | None = None
        """Told of each watched job published or seen (``_due.DueWatches`` sets it)."""
        self._selectors: dict[JobsWatch, JobSelector] = {}

    def publish(self, job: JobRecord) -> None:
        """Tell the job's watchers about its current state."""
        watchers = self._watchers.get(job.id)
        if watchers:
            self._seen[job.id] = max(self._seen.get(job.id, 0.0), job.update_time)
            for watcher in watchers:
                watcher.push(job)
            if self.on_waiting is not None:
                self.on_waiting(job)
        if self._selectors:
            self._publish_selected(job, watchers)

    def _publish_selected(self, job: JobRecord, watchers: set[_Watcher] | None) -> None:
        finished = job.state.is_terminal
        for watcher, selector in self._selectors.items():
            if watchers is not None and watcher in watchers:
                if finished:
                    self._forget(watcher, job.id)
            elif selector.matches(job):
                watcher.push(job)
                if not finished:
                    self._seen[job.id] = max(self._seen.get(job.id, 0.0), job.update_time)
                    self._watchers.setdefault(job.id, set()).add(watcher)
                    if self.on_waiting is not None:
                        self.on_waiting(job)

    def publish_all(self, jobs: Iterable[JobRecord]) -> None:
        """:meth:`publish` each of a frame's jobs; one check when nobody watches anything."""
        if self._watchers or self._selectors:
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
            if self.on_waiting is not None:
                self.on_waiting(job)

    def watched(self) -> Collection[str]:
        """Ids of the jobs someone watches."""
        return self._watchers.keys()

    @contextmanager
    def watch(self, job_id: str) -> Iterator[JobWatch]:
        """Register a watcher for the duration of the ``with`` block."""
        watcher = JobWatch()
        with self._registered(watcher, (job_id,)):
            yield watcher

    @contextmanager
    def watch_many(self, job_ids: Collection[str]) -> Iterator[JobsWatch]:
        """Register one watcher of all of ``job_ids`` for the ``with`` block."""
        watcher = JobsWatch()
        watcher.job_ids.extend(job_ids)
        with self._registered(watcher, watcher.job_ids):
            yield watcher

    @contextmanager
    def watch_selected(self, selector: JobSelector) -> Iterator[JobsWatch]:
        """Register one watcher of every job ``selector`` matches for the ``with`` block.

        A published job it matches is pushed to it; while unfinished, the job is
        also watched by id (:meth:`watched`), and no longer once it has finished.
        """
        watcher = JobsWatch()
        self._selectors[watcher] = selector
        try:
            yield watcher
        finally:
            del self._selectors[watcher]
            for job_id in [i for i, w in self._watchers.items() if watcher in w]:
                self._forget(watcher, job_id)

    def follow(self, watcher: JobsWatch, jobs: Iterable[JobRecord]) -> None:
        """Watch by id the unfinished ``jobs`` of a :meth:`watch_selected` watcher."""
        for job in jobs:
            if not job.state.is_terminal:
                self._watchers.setdefault(job.id, set()).add(watcher)
                self._seen[job.id] = max(self._seen.get(job.id, 0.0), job.update_time)

    def _forget(self, watcher: _Watcher, job_id: str) -> None:
        watchers = self._watchers.get(job_id)
        if watchers is None:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._watchers[job_id]
            self._seen.pop(job_id, None)

    def add(self, watcher: JobsWatch, job_ids: Collection[str]) -> None:
        """Also watch ``job_ids`` with a watcher of :meth:`watch_many`, until its block ends."""
        watcher.job_ids.extend(job_ids)
        for job_id in job_ids:
            self._watchers.setdefault(job_id, set()).add(watcher)

    @contextmanager
    def _registered(self, watcher: _Watcher, job_ids: Collection[str]) -> Iterator[None]:
        for job_id in job_ids:
            self._watchers.setdefault(job_id, set()).add(watcher)
        # job_ids may grow in the block (add): the cleanup reads it then.
        try:
            yield
        finally:
            for job_id in job_ids:
                self._forget(watcher, job_id)
