"""Waking idle worker streams: no busy polling.

A worker stream that found nothing ready parks here until one of its queues
may have a ready job: an enqueue or a requeue through this gateway
(:meth:`Wakeups.notify`, called in-process), a notification from another
gateway (PostgreSQL ``LISTEN``, see :mod:`._listen`), the next due ``run_at``
it was told of, or, as a fallback, the poll interval.

Each queue has a generation number that every wake-up raises. A stream reads
the generations before it looks at the table and waits only if none changed
since, so a wake-up between the look and the wait is never missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class Wakeups:
    """Per-queue generations and the streams parked on them."""

    def __init__(self) -> None:
        self._generations: dict[str, int] = {}
        # Futures in the order parked (a dict as an ordered set): the stream that
        # waited longest is woken first and claims first.
        self._parked: dict[str, dict[asyncio.Future[None], None]] = {}
        self._everything = 0

    def generation(self, queues: Iterable[str]) -> tuple[int, ...]:
        """A snapshot of the queues' generations, for :meth:`wait`."""
        return (self._everything, *(self._generations.get(q, 0) for q in queues))

    def notify(self, queues: Iterable[str] | None) -> None:
        """Wake the streams parked on ``queues`` (None: on every queue)."""
        if queues is None:
            self._everything += 1
            names: Iterable[str] = list(self._parked)
        else:
            names = queues
        for name in names:
            self._generations[name] = self._generations.get(name, 0) + 1
            for future in self._parked.get(name, ()):
                if not future.done():
                    future.set_result(None)

    async def wait(
        self,
        queues: tuple[str, ...],
        seen: tuple[int, ...],
        within: float,
        woken: asyncio.Future[None] | None = None,
    ) -> None:
        """Return at a wake-up of one of ``queues`` after ``seen``, or after ``within`` seconds.

        ``woken``: the future to wait on, which others may also complete.
        """
        if self.generation(queues) != seen or within <= 0:
            return
        future = woken if woken is not None else asyncio.get_running_loop().create_future()
        for name in queues:
            self._parked.setdefault(name, {})[future] = None
        try:
            async with asyncio.timeout(within):
                await future
        except TimeoutError:
            pass
        finally:
            for name in queues:
                parked = self._parked.get(name)
                if parked is not None:
                    parked.pop(future, None)
                    if not parked:
                        del self._parked[name]
