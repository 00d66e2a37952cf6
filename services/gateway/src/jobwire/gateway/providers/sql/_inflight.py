"""The SQL provider's writes and claims in flight: run to their end, waited for.

The state machine has already taken the leases out of its table when it
records their end (or a cancellation): a write abandoned half-way, say
because the worker's stream closed, would leave the jobs leased in the table
with nobody holding them. So such writes run as tasks of their own that a
cancelled caller does not stop, ``aclose`` waits for them, and this
gateway's reads of a job wait for its write of that job to commit (an ack,
then a ``GetJob`` through this gateway, reads the ack).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Sequence
from typing import Any, TypeVar

from jobwire.gateway._models import JobRecord

T = TypeVar("T")


class InFlight:
    """The provider's tasks, and its writes of jobs not committed yet."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        # Writes of lease endings not committed yet, by job id.
        self._writing: dict[str, asyncio.Future[None]] = {}

    def track(self, step: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``step`` as a task that :meth:`drain` waits for."""
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def spawn(self, step: Coroutine[Any, Any, None]) -> None:
        """Run ``step`` in the background, as :meth:`track` does."""
        self.track(step)

    async def unstoppable(self, write: Coroutine[Any, Any, T]) -> T:
        """Run ``write`` to its end even if the caller is cancelled meanwhile."""
        return await asyncio.shield(self.track(write))

    async def written(self, records: Sequence[JobRecord], write: Awaitable[T]) -> T:
        """Await ``write`` of ``records``, which :meth:`committed` waits for meanwhile."""
        done = asyncio.get_running_loop().create_future()
        for record in records:
            self._writing[record.id] = done
        try:
            return await write
        finally:
            done.set_result(None)
            for record in records:
                if self._writing.get(record.id) is done:
                    del self._writing[record.id]

    async def record(self, records: Sequence[JobRecord], write: Awaitable[T]) -> T:
        """Run ``write`` of ``records`` unstoppable, and make reads of them wait for it."""
        return await self.unstoppable(self.written(records, write))

    def writing(self, job_id: str) -> bool:
        """Whether a write of the job is in flight."""
        return job_id in self._writing

    async def committed(self, job_id: str) -> None:
        """Wait until this gateway's write of the job, if one is in flight, ends."""
        writing = self._writing.get(job_id)
        if writing is not None:
            await asyncio.wait([writing])

    async def drain(self) -> None:
        """Wait for every task (at shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
