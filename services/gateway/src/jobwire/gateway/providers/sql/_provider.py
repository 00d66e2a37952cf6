"""The SQL queue provider (``type = "postgres"`` and ``type = "sqlite"``): the storage hooks.

How the semantics table maps onto the jobs table (the lease state machine
above owns the rules; this is where they meet SQL):

* **Delays are native**: a job waits in the table until its ``run_at``,
  whatever the delay, and survives restarts; nothing goes through the
  scheduler (:attr:`SqlProvider.max_native_delay` is unbounded).
* **Claims** take up to the waiting stream's free credits in one statement
  (:mod:`._claim`); an idle stream parks until a wake-up (:mod:`._wake`).
* **Leases** live in this gateway's state machine; the row names the leasing
  gateway. A gateway that dies has its leases released by another one once
  its heartbeat lapses (:mod:`._fleet`); a job cancelled through another
  gateway is revoked here at its ``NOTIFY``.
* **Writes** are one transaction per call, one statement per batch (:mod:`._writes`).
* **Operators' hooks** (replay, purge, pause: :mod:`._operations`; workers
  of other gateways: :mod:`.._worker_rows`) keep their state in tables, so every
  gateway on the database and a restarted one see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Collection, Coroutine, Sequence
from typing import IO, Any, ClassVar, TypeVar

from sqlalchemy import text

from jobwire.gateway._db import create_engine, open_schema
from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobFilter, JobRecord, NewJob
from jobwire.gateway._provider_config import PostgresProviderSettings, SqliteProviderSettings
from jobwire.gateway.providers._types import (
    Claim,
    Consumer,
    Ending,
    Lease,
    Purged,
    QueueCounts,
    RevokeReason,
)
from jobwire.gateway.providers._worker_rows import WorkerRows
from jobwire.gateway.providers.base import QueueProvider
from jobwire.gateway.providers.sql import _claim
from jobwire.gateway.providers.sql._dialect import Sql, lock_sqlite_file
from jobwire.gateway.providers.sql._fleet import Fleet
from jobwire.gateway.providers.sql._listen import Listener
from jobwire.gateway.providers.sql._operations import Operations
from jobwire.gateway.providers.sql._reads import Reads
from jobwire.gateway.providers.sql._tables import MIGRATIONS, SCHEMA_VERSION, make_tables
from jobwire.gateway.providers.sql._upkeep import maintain
from jobwire.gateway.providers.sql._wake import Wakeups
from jobwire.gateway.providers.sql._writes import Writes

logger = logging.getLogger("jobwire.gateway.sql")

T = TypeVar("T")

# Key of the PostgreSQL advisory lock that serializes table creation when
# several gateways start at once (the scheduler and SQS records use others).
_SCHEMA_LOCK = 0x6A6F627173
_RETRY_AWAY = 1.0


class SqlProvider(QueueProvider[None]):
    """Queues in a SQL table, on PostgreSQL (N gateways) or a SQLite file (one gateway)."""

    max_native_delay: ClassVar[float | None] = math.inf

    def __init__(
        self, settings: PostgresProviderSettings | SqliteProviderSettings, events: JobEvents
    ) -> None:
        super().__init__(events, DedupRule(settings.dedup_window.total_seconds()))
        if settings.database_url is None:
            raise ValueError("provider.database_url is unset (GatewaySettings fills it in)")
        self._settings = settings
        self._url = settings.database_url
        postgres = isinstance(settings, PostgresProviderSettings)
        engine = create_engine(
            self._url,
            what="provider.database_url",
            pool_size=settings.pool_size if postgres else None,
        )
        async_engine = (
            create_engine(
                self._url,
                what="provider.database_url",
                pool_size=settings.pool_size,
                server_settings={"synchronous_commit": "off"},
            )
            if postgres
            else None
        )
        prefix = settings.table_prefix
        self._sql = Sql(
            engine, make_tables(prefix), uuid.uuid4().hex, prefix, async_engine=async_engine
        )
        self._wakeups = Wakeups()
        self._writes = Writes(self._sql, self.dedup)
        self._reads = Reads(self._sql, self.dedup)
        self._operations = Operations(self._sql)
        # A SQLite file serves one gateway: no other gateway's streams to show.
        self.workers = WorkerRows(self._sql.tables.workers, self._sql.write) if postgres else None
        self._fleet = Fleet(
            self._sql,
            self._writes,
            self._reads,
            self._wakeups,
            events,
            lambda: self.host,
            timeout=settings.heartbeat_timeout.total_seconds(),
        )
        self._listener = (
            Listener(
                engine,
                {
                    self._sql.ready_channel: self._on_ready,
                    self._sql.cancel_channel: self._on_cancel,
                },
                self._on_reconnect,
            )
            if postgres
            else None
        )
        self._poll = settings.poll_interval.total_seconds()
        self._lock: IO[bytes] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Writes of lease endings not committed yet, by job id: this gateway
        # reads its own writes (an ack, then a GetJob through this gateway).
        self._writing: dict[str, asyncio.Future[None]] = {}
        # Claims of this gateway's streams take turns, in the order they came:
        # the stream that waited longest is served first, and the gateway's
        # streams never race each other for the same rows.
        self._claiming = asyncio.Lock()
        # (queues, types) -> (generations, until): a stream of that kind found
        # nothing at those generations, and needs no new look before ``until``.
        self._idle: dict[tuple[tuple[str, ...], frozenset[str]], tuple[tuple[int, ...], float]] = {}
        self._maintenance: asyncio.Task[None] | None = None

    @property
    def gateway_id(self) -> str:
        """This gateway's id in the ``gateways`` table and in the rows it leases."""
        return self._sql.gateway_id

    async def open(self) -> None:
        """Take the file (SQLite), create or check the tables, join, release dead leases.

        Raises:
            RuntimeError: the database is unreachable, holds another schema
                version, or (SQLite) another gateway serves the file.
        """
        self._lock = lock_sqlite_file(self._url)
        try:
            tables = self._sql.tables
            await open_schema(
                self._sql.engine,
                tables.metadata,
                tables.schema,
                SCHEMA_VERSION,
                lock_key=_SCHEMA_LOCK,
                what="queue",
                migrations=MIGRATIONS,
            )
            await self._fleet.join()
            await self._fleet.reap()
            await self._warm_up()
            if self._listener is not None:
                await self._listener.start()
        except BaseException:
            await self._release()
            raise
        self._maintenance = asyncio.get_running_loop().create_task(
            maintain(self._sql, self._fleet, self._settings)
        )

    async def _warm_up(self) -> None:
        # A new asyncpg connection spends several round trips on type
        # introspection: pay it now rather than on the first enqueue or claim.
        if not self._sql.postgres:
            return
        async with contextlib.AsyncExitStack() as stack:
            for engine in (self._sql.engine, self._sql.async_engine):
                for _ in range(min(2, self._settings.pool_size)):
                    conn = await stack.enter_async_context(engine.connect())
                    await conn.execute(text("SELECT 1"))

    async def aclose(self) -> None:
        """Stop the background work, leave the fleet and disconnect."""
        if self._maintenance is not None:
            self._maintenance.cancel()
            await asyncio.gather(self._maintenance, return_exceptions=True)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            await self._listener.close()
        try:
            await self._fleet.leave()
        except UnavailableError as error:
            logger.warning("could not remove this gateway's row (%s)", error)
        await self._release()

    async def _release(self) -> None:
        await self._sql.engine.dispose()
        await self._sql.async_engine.dispose()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # Jobs --------------------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs in one transaction; answered after the commit."""
        results = await self._writes.insert(jobs, time.time())
        self._wakeups.notify({job.queue for job, duplicate in results if not duplicate})
        return results

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job from the table, once this gateway's write of it committed."""
        writing = self._writing.get(job_id)
        if writing is not None:
            await asyncio.wait([writing])
        return await self._reads.get(job_id, time.time())

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List from the table, newest first."""
        return await self._reads.list_jobs(where, limit, cursor, time.time())

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the table."""
        return await self._reads.counts(queue, time.time())

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys."""
        return await self._reads.key_holders(keys, time.time())

    async def cancel(
        self, job_id: str, message: str, lease: Lease[None] | None
    ) -> JobRecord | None:
        """Cancel in the table; a gateway leasing the job elsewhere is notified."""
        return await self._unstoppable(self._writes.cancel(job_id, message, time.time()))

    # Operations --------------------------------------------------------------

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Make a dead, failed or cancelled job pending again, in one transaction."""
        replayed = await self._operations.replay(job_id, payload, max_retries)
        if replayed is not None and replayed[1]:
            self._wakeups.notify({replayed[0].queue})
        return replayed

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay the selected jobs in one statement, once per request id."""
        count, queues = await self._operations.replay_jobs(selector, request_id)
        self._wakeups.notify(queues)
        return count

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete (or count) the selected jobs in one statement."""
        return await self._operations.purge(
            selector, include_processing=include_processing, validate_only=validate_only
        )

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue for every gateway on the database."""
        await self._operations.set_paused(queue, paused)
        if not paused:
            self._wakeups.notify({queue})

    # Leases ------------------------------------------------------------------

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[None]]:
        """Claim ready jobs, parking until a wake-up when there are none."""
        kind = (consumer.queues, consumer.job_types)
        while True:
            seen = self._wakeups.generation(consumer.queues)
            idle = self._idle.get(kind)
            if idle is not None and idle[0] == seen and time.time() < idle[1]:
                # A stream of the same queues and types found nothing and no
                # wake-up came since: park behind it without asking the table,
                # so that the stream that waited longest is served first.
                await self._wakeups.wait(consumer.queues, seen, idle[1] - time.time())
                continue
            try:
                records = await self._claim(consumer, max_jobs)
                if records:
                    return [Claim(record, None) for record in records]
                async with self._sql.read() as conn:
                    due = await _claim.next_due(self._sql, conn, consumer)
            except UnavailableError as error:
                # The database is away: the stream stays open and tries again.
                logger.warning("claim failed (%s); retrying in %gs", error, _RETRY_AWAY)
                await asyncio.sleep(_RETRY_AWAY)
                continue
            until = time.time() + self._poll if due is None else min(time.time() + self._poll, due)
            if self._wakeups.generation(consumer.queues) == seen:
                self._idle[kind] = (seen, until)
            await self._wakeups.wait(consumer.queues, seen, until - time.time())

    async def _claim(self, consumer: Consumer, max_jobs: int) -> list[JobRecord]:
        # A stream that goes away during the claim must not strand the jobs
        # taken: the claim finishes, and puts them back.
        task = self._track(self._claim_in_turn(consumer, max_jobs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._put_back)
            raise

    async def _claim_in_turn(self, consumer: Consumer, max_jobs: int) -> list[JobRecord]:
        async with self._claiming:
            return await _claim.claim(self._sql, consumer, max_jobs, time.time())

    def _put_back(self, task: asyncio.Task[list[JobRecord]]) -> None:
        if task.cancelled() or task.exception() is not None or not task.result():
            return
        self._spawn(self._give_back(task.result()))

    async def _give_back(self, records: list[JobRecord]) -> None:
        await self._writes.put_back(records)
        self._wakeups.notify({record.queue for record in records})

    async def settle(self, endings: Sequence[Ending[None]]) -> Sequence[bool] | None:
        """Record the endings of one frame in one statement."""
        records = []
        for ending in endings:
            job = ending.lease.job
            job.end_attempt(ending.end)
            records.append(job)
        written = await self._unstoppable(self._written(records, self._writes.settle(records)))
        self._wakeups.notify({r.queue for r in records if not r.state.is_terminal})
        if len(written) == len(records):
            return None
        return [record.id in written for record in records]

    async def save_progress(self, lease: Lease[None]) -> None:
        """Store the job's progress."""
        await self._unstoppable(self._written([lease.job], self._writes.save_progress(lease.job)))

    async def _unstoppable(self, write: Coroutine[Any, Any, T]) -> T:
        """Run ``write`` to its end even if the caller is cancelled meanwhile.

        The state machine has already taken the leases out of its table when
        it records their end (or a cancellation): a write abandoned half-way,
        say because the worker's stream closed, would leave the jobs leased
        in the table with nobody holding them.
        """
        return await asyncio.shield(self._track(write))

    def _track(self, step: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Run ``step`` as a task that :meth:`aclose` waits for."""
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _written(self, records: Sequence[JobRecord], write: Awaitable[T]) -> T:
        """Await ``write`` of ``records``, which :meth:`get` waits for meanwhile."""
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

    # Background --------------------------------------------------------------

    def _on_ready(self, payload: str) -> None:
        sender, _, names = payload.partition("|")
        if sender != self._sql.gateway_id:
            self._wakeups.notify(None if names == "*" else names.split(","))

    def _on_cancel(self, payload: str) -> None:
        gateway, _, rest = payload.partition("|")
        job_id, _, message = rest.partition("|")
        if gateway == self._sql.gateway_id:
            self.host.lost(job_id, RevokeReason.CANCELLED, message)

    def _on_reconnect(self) -> None:
        self._wakeups.notify(None)
        self._spawn(self._fleet.check_leases())

    def _spawn(self, step: Coroutine[Any, Any, None]) -> None:
        self._track(step)
