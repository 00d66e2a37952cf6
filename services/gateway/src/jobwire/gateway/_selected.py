"""The jobs a ``WatchJobs`` selector matches: those that exist, and new ones enqueued elsewhere.

A watch by selector starts from the jobs that match it when it begins
(:func:`existing`, from the provider and from the scheduler's held jobs),
then sees every matching job this gateway publishes (:mod:`._events`). On a
backend that several gateways share, jobs enqueued through another gateway
are never published here: :class:`NewElsewhere` lists the newest jobs every
``look_interval`` and publishes those it has not met, as changes read back
from storage. Their later changes then reach the watch the way every
watched job's do (the provider reads back the jobs watched here).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from jobwire.gateway._errors import GatewayError, InvalidArgumentError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobFilter, JobRecord

logger = logging.getLogger("jobwire.gateway")

MAX_EXISTING = 100_000
"""Most existing jobs a selector may match when its watch begins."""
_PAGE = 1000
# How far back in creation time each look reaches past the previous one: a
# job is listed once its insert commits, stamped with the clock of the
# gateway that took it (commit delays, clock skew).
_MARGIN = 5.0

ProviderPage = Callable[[JobFilter, int, str | None], Awaitable[tuple[list[JobRecord], str | None]]]
HeldPage = Callable[[JobFilter, int, tuple[float, str] | None], Awaitable[list[JobRecord]]]
GetOne = Callable[[str], Awaitable[JobRecord | None]]


async def existing(
    selector: JobSelector, provider: ProviderPage, held: HeldPage | None, get: GetOne
) -> list[JobRecord]:
    """Every job ``selector`` matches now, wherever it is held.

    Raises:
        InvalidArgumentError: more than :data:`MAX_EXISTING` jobs match.
    """
    if selector.ids:
        found = [await get(job_id) for job_id in sorted(selector.ids)]
        return [job for job in found if job is not None and selector.matches(job)]
    where = JobFilter(queue=selector.queue, type=selector.type)
    jobs: dict[str, JobRecord] = {}

    def take(page: list[JobRecord]) -> None:
        for job in page:
            if selector.matches(job):
                jobs[job.id] = job
        if len(jobs) > MAX_EXISTING:
            raise InvalidArgumentError(
                "selector",
                f"matches more than {MAX_EXISTING} existing jobs: narrow it (for example"
                " with create_time_after) or set only_new",
            )

    cursor: str | None = None
    while True:
        page, cursor = await provider(where, _PAGE, cursor)
        take(page)
        if cursor is None:
            break
    if held is not None:
        after: tuple[float, str] | None = None
        while page := await held(where, _PAGE, after):
            take(page)
            after = (page[-1].create_time, page[-1].id)
    return list(jobs.values())


class NewElsewhere:
    """Looks for jobs that other gateways enqueued and ``selector`` matches.

    Each look lists the provider's jobs newest first down to those created
    :data:`_MARGIN` seconds before the previous look began, and publishes each
    matching job it has not met (or met in another state) with
    ``publish_if_newer``.
    """

    def __init__(
        self,
        selector: JobSelector,
        provider: ProviderPage,
        events: JobEvents,
        interval: float,
        *,
        since: float,
    ) -> None:
        self._selector = selector
        self._provider = provider
        self._events = events
        self._interval = interval
        self._horizon = since - _MARGIN
        self._met: dict[str, float] = {}

    async def run(self) -> None:
        """Look every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.look()
            except GatewayError as error:  # the backend is away: look again next time
                logger.warning("looking for jobs other gateways enqueued failed: %s", error)

    async def look(self) -> None:
        """List the jobs created since the last look (with a margin) and publish new ones."""
        began = time.time()
        where = JobFilter(queue=self._selector.queue, type=self._selector.type)
        met: dict[str, float] = {}
        cursor: str | None = None
        while True:
            page, cursor = await self._provider(where, _PAGE, cursor)
            for job in page:
                if job.create_time < self._horizon:
                    continue
                met[job.id] = job.update_time
                if self._selector.matches(job) and self._met.get(job.id) != job.update_time:
                    self._events.publish_if_newer(job)
            if cursor is None or (page and page[-1].create_time < self._horizon):
                break
        self._met = met
        self._horizon = began - _MARGIN
