"""The scheduler's loop: claim due work, hand it to the provider, confirm, sleep.

The loop sleeps until the earliest due time in the database, at most
``poll_interval``, and is woken at once when this gateway stores something
due sooner. Database failures (a restart, a dropped connection) are logged and
retried with backoff; work claimed but not yet confirmed stays in memory and
is confirmed once the database answers again, so a provider never gets the
same job twice from this gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from jobwire.gateway._config import SchedulerSettings
from jobwire.gateway._errors import GatewayError
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway.scheduler.firing import Handoff
from jobwire.gateway.scheduler.sink import JobSink
from jobwire.gateway.scheduler.store import SchedulerStore

logger = logging.getLogger("jobwire.gateway.scheduler")

Clock = Callable[[], datetime]
"""Returns the current time as an aware UTC datetime."""

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 5.0
# Whole-millisecond timers can fire a hair early; a due time must not be
# looked at before it has passed.
_TIMER_SLACK = 0.002
# When something is due but claimed by another gateway's open transaction,
# look again shortly instead of spinning.
_BUSY_RETRY = 0.01
_PRUNE_EVERY = timedelta(hours=1)
# A step is a few short transactions; one that hangs longer is cancelled.
_STOP_TIMEOUT = 5.0


def utc_now() -> datetime:
    """Return the current time, aware, in UTC."""
    return datetime.now(UTC)


class Runner:
    """Moves due one-time jobs and schedule occurrences to the queue."""

    def __init__(
        self,
        store: SchedulerStore,
        sink: JobSink,
        settings: SchedulerSettings,
        clock: Clock = utc_now,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics or GatewayMetrics()
        self.sink = sink
        self.clock = clock
        self._settings = settings
        self._wake = asyncio.Event()
        self._asleep_until: datetime | None = None
        self._unconfirmed: list[Handoff] = []
        self._next_prune: datetime | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop as a task of the running event loop."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="jobwire-scheduler")

    async def stop(self) -> None:
        """Finish the current step, stop the loop and confirm what is pending."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(task, _STOP_TIMEOUT)
        except TimeoutError:
            logger.warning("scheduler did not stop within %ss; cancelled", _STOP_TIMEOUT)
        if self._unconfirmed:
            with contextlib.suppress(Exception):
                await self._confirm()

    def wake(self) -> None:
        """Look at the database now (the clock moved, or work was added elsewhere)."""
        self._wake.set()

    def notify(self, due: datetime | None) -> None:
        """Tell the loop that work is due at ``due``; wakes it if that is sooner."""
        if due is not None and (self._asleep_until is None or due < self._asleep_until):
            self._wake.set()

    async def run_once(self) -> int:
        """Claim and hand over one batch of due work; return how many jobs moved.

        The loop does this repeatedly; tests and benchmarks call it directly.
        """
        handoffs, _ = await self._step()
        return len(handoffs)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            # Cleared before looking, so a notify() during the step is not lost.
            self._wake.clear()
            self._asleep_until = None
            try:
                handoffs, more = await self._step()
                failures = 0
                delay = 0.0 if more else await self._idle_time(moved=bool(handoffs))
            except Exception as error:
                failures += 1
                delay = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (failures - 1))
                # The traceback once per outage; then one line per retry.
                logger.warning(
                    "scheduler step failed (%s); retrying in %.1fs",
                    error,
                    delay,
                    exc_info=failures == 1 and not isinstance(error, GatewayError),
                )
            if delay > 0 and not self._stopping:
                self._asleep_until = self.clock() + timedelta(seconds=delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _step(self) -> tuple[list[Handoff], bool]:
        # Confirm first what an outage left pending, so the claims this
        # gateway holds never expire into another gateway's hands.
        await self._confirm()
        now = self.clock()
        await self._prune(now)
        settings = self._settings
        handoffs, more = await self.store.claim(
            now,
            limit=settings.batch_size,
            lease=settings.claim_timeout,
            grace=settings.misfire_grace,
        )
        if handoffs:
            await self._hand_over(handoffs, now)
        return handoffs, more

    async def _hand_over(self, handoffs: list[Handoff], now: datetime) -> None:
        try:
            await self.sink.submit([handoff.job for handoff in handoffs])
        except Exception as error:
            logger.exception("the provider refused %d scheduled jobs", len(handoffs))
            await self.store.record_failure(handoffs, f"{type(error).__name__}: {error}", now)
            return
        self._unconfirmed.extend(handoffs)
        for handoff in handoffs:
            self.metrics.scheduled(handoff.job, handoff.fire_time, now)
        await self._confirm()

    async def _confirm(self) -> None:
        if not self._unconfirmed:
            return
        cancelled = await self.store.confirm(self._unconfirmed, self.clock())
        self._unconfirmed = []
        for job_id in cancelled:
            # CancelJob reached the scheduler while the job was on its way.
            with contextlib.suppress(GatewayError):
                await self.sink.cancel_job(job_id, "cancelled while being scheduled")

    async def _prune(self, now: datetime) -> None:
        if self._next_prune is not None and now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        removed = await self.store.prune(now - self._settings.history_retention)
        if removed:
            logger.info("scheduler pruned %d finished rows", removed)

    async def _idle_time(self, *, moved: bool) -> float:
        poll = self._settings.poll_interval.total_seconds()
        due = await self.store.next_due_time()
        if due is None:
            return poll
        wait = (due - self.clock()).total_seconds()
        if wait <= 0:
            # Due but not claimable: locked by another gateway's transaction.
            return 0.0 if moved else _BUSY_RETRY
        return min(poll, wait + _TIMER_SLACK)
