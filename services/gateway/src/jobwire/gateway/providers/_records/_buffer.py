"""Group commit of the job records' writes.

The provider changes :class:`JobRecord` objects in memory and saves them
here; one flusher task commits everything saved since its last commit in one
transaction, then runs the callbacks saved with it (the broker calls that must
follow a write: delete a finished job's message only once its end is
recorded). A failed commit is retried with backoff, the batch kept in front of
what was saved meanwhile. Reads look here first, so a gateway always reads
its own writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._models import JobRecord
from jobwire.gateway.providers._records._tables import rank

logger = logging.getLogger("jobwire.gateway.records")

_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 5.0


@dataclass(slots=True)
class Write:
    """What is buffered for one job."""

    record: JobRecord | None
    """The state to write; None when only ``uncounted`` changes."""
    uncounted: int = 0
    then: list[Callable[[], None]] = field(default_factory=list)


def supersedes(new: JobRecord, old: JobRecord) -> bool:
    """Whether ``new`` is written over ``old``, by the rule of the records' update.

    A finish applies unless a newer attempt began; anything else only over an
    older or equal rank (within an attempt, processing comes before its
    outcome). A stale answer buffered after a newer attempt's state (its lease
    was lost and the job redelivered) must not replace it in the buffer either.
    """
    if new is old:
        return True
    if old.state.is_terminal:
        return False
    if new.state.is_terminal and new.attempt >= old.attempt:
        return True
    return rank(new) >= rank(old)


class WriteBuffer:
    """Buffered writes, committed by ``commit(batch)``; ``after()`` runs after each commit."""

    def __init__(
        self,
        commit: Callable[[dict[str, Write]], Awaitable[None]],
        after: Callable[[], Awaitable[None]],
    ) -> None:
        self._commit = commit
        self._after = after
        self._pending: dict[str, Write] = {}
        self._flushing: dict[str, Write] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the flusher task."""
        self._flusher = asyncio.create_task(self._flush_loop(), name="jobwire-records")

    async def close(self, grace: float) -> None:
        """Commit what is buffered, waiting ``grace`` seconds at most; stop the flusher."""
        if self._flusher is None:
            return
        try:
            await asyncio.wait_for(self.flush(), grace)
        except (TimeoutError, UnavailableError):
            logger.warning("job records: %d changes not committed at shutdown", len(self._pending))
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        self._flusher = None

    def save(self, record: JobRecord, then: Callable[[], None] | None = None) -> None:
        """Buffer ``record``'s current state; ``then`` runs once it is committed."""
        write = self._pending.get(record.id)
        if write is None:
            write = self._pending[record.id] = Write(record)
        elif write.record is None or supersedes(record, write.record):
            write.record = record
        if then is not None:
            write.then.append(then)
        self._dirty.set()

    def count_uncounted(self, job_id: str, then: Callable[[], None] | None = None) -> None:
        """Record that a receipt of the job's message was not an attempt; then run ``then``."""
        write = self._pending.get(job_id)
        if write is None:
            write = self._pending[job_id] = Write(None)
        write.uncounted += 1
        if then is not None:
            write.then.append(then)
        self._dirty.set()

    def buffered(self, job_id: str) -> JobRecord | None:
        """The newest state of a job saved and not committed yet, if any."""
        for writes in (self._pending, self._flushing):
            write = writes.get(job_id)
            if write is not None and write.record is not None:
                return write.record
        return None

    def forget(self, job_id: str) -> None:
        """Drop what is buffered for a job (its record is being deleted)."""
        self._pending.pop(job_id, None)

    async def flush(self) -> None:
        """Wait until everything saved before this call is committed.

        Raises:
            UnavailableError: the database failed; the writes stay buffered and
                are retried.
        """
        if not self._pending and not self._flushing:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._dirty.set()
        await asyncio.shield(waiter)

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            batch, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, []
            self._flushing = batch
            error: Exception | None = None
            try:
                if batch:
                    await self._commit(batch)
            except Exception as caught:
                error = caught
            finally:
                self._flushing = {}
            if error is not None:
                failures += 1
                self._requeue(batch)
                self._waiters[:0] = waiters
                delay = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (failures - 1))
                logger.warning(
                    "job records: commit of %d changes failed (%s); retrying in %.2fs",
                    len(batch),
                    error,
                    delay,
                    exc_info=failures == 1 and not isinstance(error, UnavailableError),
                )
                self._dirty.set()
                await asyncio.sleep(delay)
                continue
            failures = 0
            for write in batch.values():
                for then in write.then:
                    try:
                        then()
                    except Exception:
                        logger.exception("job records: a post-commit action failed")
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            await self._after()

    def _requeue(self, batch: dict[str, Write]) -> None:
        # A failed batch goes back in front of what was saved meanwhile.
        for job_id, write in batch.items():
            newer = self._pending.get(job_id)
            if newer is None:
                self._pending[job_id] = write
            else:
                newer.record = newer.record or write.record
                newer.uncounted += write.uncounted
                newer.then[:0] = write.then
