"""Telling watchers that a delayed job came due when nothing writes it then.

A provider that holds delays natively may turn a job from scheduled (or
failed, waiting for its retry) into pending with no write at all: on the SQL
providers it is a row whose ``run_at`` passes, on SQS a message whose delay
ends. Nothing would publish that change, and a ``WatchJob`` stream would
never hear of it. So the service keeps one loop timer for the earliest due
time among the waiting jobs someone watches (:class:`JobEvents` reports
each one it publishes or a watch starts from), reads those jobs again when
it fires, and publishes what changed. ``publish_if_newer`` keeps a change a
provider published itself (the memory provider's own timer) from being sent
twice.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from jobwire.gateway._errors import GatewayError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobRecord, JobState

logger = logging.getLogger("jobwire.gateway.events")

_WAITING = (JobState.SCHEDULED, JobState.FAILED)
_RETRY = 1.0  # seconds before reading again a job whose read failed


class DueWatches:
    """One timer for the watched waiting jobs; they are read again when due.

    Args:
        events: the watchers; its ``on_waiting`` is set to :meth:`arm`.
        read: reads a job as clients see it now (None when it is gone).
    """

    def __init__(self, events: JobEvents, read: Callable[[str], Awaitable[JobRecord | None]]):
        self._events = events
        self._read = read
        self._due: list[tuple[float, str]] = []  # a heap of (due time, job id)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._tasks: set[asyncio.Task[Any]] = set()
        events.on_waiting = self.arm

    def arm(self, job: JobRecord) -> None:
        """Read ``job`` again when it comes due, if it waits for a time ahead."""
        if job.state not in _WAITING or job.schedule_time is None:
            return
        self._at(job.schedule_time, job.id)

    def _at(self, due: float, job_id: str) -> None:
        heapq.heappush(self._due, (due, job_id))
        if due < self._timer_at:
            self._start_timer()

    def _start_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        if self._due:
            self._timer_at = self._due[0][0]
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(max(0.0, self._timer_at - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        now, watched = time.time(), self._events.watched()
        due: set[str] = set()
        while self._due and self._due[0][0] <= now:
            _, job_id = heapq.heappop(self._due)
            if job_id in watched:
                due.add(job_id)
        if due:
            task = asyncio.get_running_loop().create_task(self._read_again(due))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._start_timer()

    async def _read_again(self, job_ids: Collection[str]) -> None:
        for job_id in job_ids:
            try:
                job = await self._read(job_id)
            except GatewayError as error:
                logger.warning("reading job %s as it came due failed (%s)", job_id, error)
                self._at(time.time() + _RETRY, job_id)
                continue
            if job is None:
                continue
            if job.state in _WAITING and job.schedule_time and job.schedule_time > time.time():
                self._at(job.schedule_time, job_id)  # read a moment early: again when due
            self._events.publish_if_newer(job)

    async def aclose(self) -> None:
        """Stop the timer and wait for the reads under way."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due.clear()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
