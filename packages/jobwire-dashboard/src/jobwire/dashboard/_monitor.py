"""Samples the gateway's queue statistics and tells the live pages when they change."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

from jobwire.client import AsyncClient, JobwireError, QueueStatsList
from jobwire.dashboard._history import History


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Monitor:
    """The latest `GetQueueStats` answer, an hour of history, and a change signal.

    One poller per dashboard, whatever the number of open pages: each page's
    event stream waits on `changed` and renders what the last sample holds.
    """

    def __init__(
        self, client: AsyncClient, interval: float, clock: Callable[[], datetime] = _utcnow
    ) -> None:
        self.history = History()
        self.stats = QueueStatsList()
        #: Why the last sample failed (the gateway is down...), or None.
        self.error: str | None = None
        self.sampled_at: datetime | None = None
        self.version = 0
        self._client = client
        self._interval = interval
        self._clock = clock
        self._changed = asyncio.Condition()

    async def sample(self) -> None:
        """Asks the gateway for every queue's counts now and wakes the waiting pages."""
        try:
            stats = await self._client.stats()
        except JobwireError as error:
            self.error = str(error)
        else:
            self.error = None
            now = self._clock()
            self.stats = stats
            self.sampled_at = now
            self.history.record(now, stats)
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def run(self) -> None:
        """Samples every `interval` seconds until cancelled."""
        while True:
            await self.sample()
            await asyncio.sleep(self._interval)

    async def changed(self, version: int) -> int:
        """Waits until a sample newer than `version` is taken; returns its version."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.version != version)
            return self.version

    def now(self) -> datetime:
        """The monitor's clock."""
        return self._clock()
