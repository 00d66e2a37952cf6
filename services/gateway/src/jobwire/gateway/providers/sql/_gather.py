"""Lease endings of several frames in one statement.

A worker's acks arrive frame after frame; each frame used to be one
statement and one round trip, and the next frame waited for it. Now the
endings that come while a write is in flight wait for it to finish and then
go together, in one statement: at a low rate each frame is written at once
(latency unchanged), at a high rate the statements grow instead of queueing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from jobwire.gateway._models import JobRecord

MAX_GATHERED = 2000
"""Most endings one statement writes."""


class Gathered:
    """Writes endings with ``write``, one call at a time, gathering those that wait.

    Args:
        write: writes records, returns the ids written.
        track: runs a coroutine as a task that outlives its callers.
    """

    def __init__(
        self,
        write: Callable[[Sequence[JobRecord]], Awaitable[set[str]]],
        track: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]],
    ) -> None:
        self._write = write
        self._track = track
        self._waiting: list[tuple[Sequence[JobRecord], asyncio.Future[set[str]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def write(self, records: Sequence[JobRecord]) -> set[str]:
        """Write ``records`` (with whatever else waits); the ids written among all."""
        future: asyncio.Future[set[str]] = asyncio.get_running_loop().create_future()
        # A caller that goes away must not leave an exception nobody reads.
        future.add_done_callback(_consume)
        self._waiting.append((records, future))
        if self._writer is None:
            self._writer = self._track(self._run())
        return await asyncio.shield(future)

    async def _run(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[Sequence[JobRecord], asyncio.Future[set[str]]]] = []
                size = 0
                while self._waiting and (
                    not batch or size + len(self._waiting[0][0]) <= MAX_GATHERED
                ):
                    records, future = self._waiting.pop(0)
                    batch.append((records, future))
                    size += len(records)
                try:
                    written = await self._write([r for records, _ in batch for r in records])
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for _, future in batch:
                    if not future.done():
                        future.set_result(written)
        finally:
            self._writer = None


def _consume(future: asyncio.Future[set[str]]) -> None:
    if not future.cancelled():
        future.exception()
