"""Claims ahead: the jobs a stream's returned credits will ask for, leased in its answer's call.

When a worker answers a frame its credits come back, and its session asks
for as many jobs at once: a second script call and round trip after the
answer's. Instead the answer's call (``settle.lua``) also leases that many
jobs to the stream, and they wait here for the stream's next claim, which
takes them without going to Redis. From that call on they are PROCESSING in
Redis, leased to this gateway, as any claimed job. A job cancelled meanwhile
is dropped here (the cancel channel says so); jobs the stream does not take
within :data:`HOLD` seconds (it closed or began draining) go back to their
queue at once, their attempt undone (``unclaim.lua``): no worker had them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence

from jobwire.gateway._models import JobRecord
from jobwire.gateway.providers._types import Claim, Consumer

HOLD = 0.5
"""Seconds jobs claimed ahead wait for their stream before they go back."""


class ClaimsAhead:
    """Jobs leased ahead for worker streams of this gateway, until their next claim.

    Args:
        give_back: puts jobs no stream took back in their queue, as if never leased.
    """

    def __init__(self, give_back: Callable[[Sequence[JobRecord]], None]) -> None:
        self._give_back = give_back
        self._held: dict[Consumer, list[Claim[int]]] = {}
        self._timers: dict[Consumer, asyncio.TimerHandle] = {}
        self._waiting: dict[Consumer, asyncio.Future[None]] = {}
        self._asking: dict[Consumer, int] = {}

    def wanted(self, consumer: Consumer, free: int) -> int:
        """How many jobs to lease ahead for ``consumer`` with ``free`` credits.

        Not those it holds already, nor those a claim of its looks or waits for now.
        """
        return free - len(self._held.get(consumer, ())) - self._asking.get(consumer, 0)

    def put(self, consumer: Consumer, claims: Sequence[Claim[int]]) -> None:
        """Hold ``claims`` for ``consumer``'s next claim; wake it if it waits."""
        self._held.setdefault(consumer, []).extend(claims)
        if consumer not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[consumer] = loop.call_later(HOLD, self._expire, consumer)
        waiter = self._waiting.get(consumer)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self, consumer: Consumer, max_jobs: int) -> list[Claim[int]]:
        """Up to ``max_jobs`` of the jobs held for ``consumer`` (none: ``[]``)."""
        held = self._held.pop(consumer, None)
        if not held:
            return []
        timer = self._timers.pop(consumer, None)
        if timer is not None:
            timer.cancel()
        if len(held) > max_jobs:
            self.put(consumer, held[max_jobs:])
            del held[max_jobs:]
        return held

    @contextlib.contextmanager
    def waiting(
        self, consumer: Consumer, max_jobs: int, woken: asyncio.Future[None]
    ) -> Iterator[None]:
        """While inside, a claim for ``consumer`` of up to ``max_jobs`` jobs looks or waits.

        Jobs held for ``consumer`` meanwhile resolve ``woken``.
        """
        self._waiting[consumer] = woken
        self._asking[consumer] = max_jobs
        try:
            yield
        finally:
            if self._waiting.get(consumer) is woken:
                del self._waiting[consumer]
                del self._asking[consumer]

    def drop(self, job_id: str) -> None:
        """Forget the held job ``job_id`` (cancelled or deleted through a gateway)."""
        for consumer, held in self._held.items():
            for i, claim in enumerate(held):
                if claim.job.id == job_id:
                    del held[i]
                    if not held:
                        self._forget(consumer)
                    return

    def release(self) -> None:
        """Give every held job back (this gateway stops, or lost its leases)."""
        jobs = [claim.job for held in self._held.values() for claim in held]
        for consumer in list(self._held):
            self._forget(consumer)
        if jobs:
            self._give_back(jobs)

    def _expire(self, consumer: Consumer) -> None:
        held = self._held.get(consumer, [])
        self._forget(consumer)
        if held:
            self._give_back([claim.job for claim in held])

    def _forget(self, consumer: Consumer) -> None:
        self._held.pop(consumer, None)
        timer = self._timers.pop(consumer, None)
        if timer is not None:
            timer.cancel()
