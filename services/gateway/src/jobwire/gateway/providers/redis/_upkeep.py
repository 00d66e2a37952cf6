"""What each gateway does by itself on timers: heartbeat, take back, promote, forget.

* **Heartbeat**: ``alive:GATEWAY`` is set with a TTL of ``gateway_timeout``
  every third of it. Once it lapses, any other gateway takes that gateway's
  leases back (``reap.lua``).
* **Take back**, at each heartbeat: the leases of dead gateways, and leases
  whose deadline passed ``gateway_timeout`` ago without an ending (their
  gateway could not reach Redis when it ended them). Each is a lost attempt.
* **Promote**: a timer set to the next due time of the delayed set moves due
  jobs to their ready sets (``promote.lua``). An insert or a retry due sooner
  on this gateway moves the timer nearer; one due sooner on another gateway
  is promoted by that gateway, or by this one at its next heartbeat at the
  latest.
* **Forget** finished jobs older than ``history_retention``, and **refresh**
  the jobs this gateway's ``WatchJob`` streams watch (another gateway may
  have changed them).

A failure to reach Redis is logged and tried again at the next tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence

from redis.asyncio import Redis

from jobwire.gateway.providers.redis._codec import millis
from jobwire.gateway.providers.redis._errors import DISCONNECTED
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._scripts import Scripts

logger = logging.getLogger("jobwire.gateway.redis")

_PROMOTE_BATCH = 1000
_TRIM_BATCH = 1000


class Upkeep:
    """The timers of one gateway on one Redis.

    Args:
        client: the provider's client.
        scripts: the provider's scripts.
        keys: the key layout.
        gateway: this gateway's id.
        timeout: ``gateway_timeout`` in seconds.
        retention: ``history_retention`` in seconds.
        take_back: ends the leases ``reap.lua`` returned ({from gateway, job} pairs).
        refresh: publishes the watched jobs' changes made elsewhere.
        promoted: called with the ids of jobs promoted.
        presumed_dead: called when this gateway finds its heartbeat had lapsed.
    """

    def __init__(
        self,
        client: Redis,
        scripts: Scripts,
        keys: Keys,
        gateway: str,
        *,
        timeout: float,
        retention: float,
        take_back: Callable[[Sequence[object]], Awaitable[None]],
        refresh: Callable[[Sequence[bytes]], Awaitable[None]],
        presumed_dead: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys
        self._gateway = gateway
        self._timeout = timeout
        self._interval = timeout / 3
        self._retention = retention
        self._take_back = take_back
        self._refresh = refresh
        self._presumed_dead = presumed_dead
        self._next_due = math.inf
        self._due_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._beats = 0

    async def start(self) -> None:
        """Send the first heartbeat, then start the timers."""
        await self.heartbeat()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._ticks()), loop.create_task(self._promoter())]

    async def stop(self) -> None:
        """Stop the timers and end the heartbeat, so others take back what is left at once."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(*DISCONNECTED):
            await self._client.delete(self._keys.alive(self._gateway))

    def due(self, when_ms: float) -> None:
        """A job of this gateway's becomes due at ``when_ms``: promote it then."""
        if when_ms < self._next_due:
            self._next_due = when_ms
            self._due_changed.set()

    async def heartbeat(self) -> None:
        """Refresh this gateway's heartbeat key; notice if it had lapsed."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._keys.alive(self._gateway), b"1", px=millis(self._timeout), get=True)
            pipe.sadd(self._keys.gateways, self._gateway)
            before, _ = await pipe.execute()
        self._beats += 1
        if before is None and self._beats > 1:
            await self._presumed_dead()

    async def tick(self) -> None:
        """One round: heartbeat, take back, forget old history, refresh watched jobs."""
        await self.heartbeat()
        now = time.time()
        replies = await self._scripts.reap(
            keys=[self._keys.seq],
            args=[self._keys.prefix, self._gateway, millis(now), millis(self._timeout)],
        )
        if replies:
            await self._take_back(replies)
        await self._scripts.trim(
            keys=[self._keys.seq],
            args=[self._keys.prefix, repr(now - self._retention), _TRIM_BATCH],
        )
        await self._refresh(())
        # Another gateway's delayed jobs, should it have died before their time.
        self.due(millis(now))

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except DISCONNECTED as error:
                logger.warning("Redis unreachable for upkeep (%s); trying again", error)
            except Exception:
                logger.exception("Redis upkeep failed; trying again")

    async def _promoter(self) -> None:
        while True:
            wait = (self._next_due - time.time() * 1000) / 1000
            if wait > 0:
                self._due_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(wait, self._interval)):
                        await self._due_changed.wait()
                continue
            self._next_due = math.inf
            try:
                await self._promote()
            except DISCONNECTED as error:
                logger.warning("Redis unreachable to promote due jobs (%s); trying again", error)
                self.due(time.time() * 1000 + self._interval * 1000)
            except Exception:
                logger.exception("promoting due jobs failed; trying again")
                self.due(time.time() * 1000 + self._interval * 1000)

    async def _promote(self) -> None:
        while True:
            now = time.time()
            reply = await self._scripts.promote(
                keys=[self._keys.seq],
                # Whole milliseconds rounded down, due times up: never early.
                args=[self._keys.prefix, int(now * 1000), repr(now), _PROMOTE_BATCH],
            )
            moved, next_due = reply[:-1], reply[-1]
            if moved:
                await self._refresh(moved)
            if len(moved) < _PROMOTE_BATCH:
                if next_due:
                    self.due(float(next_due))
                return
