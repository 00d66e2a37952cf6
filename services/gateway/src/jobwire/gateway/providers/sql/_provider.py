"""The SQL queue provider (``type = "postgres"`` and ``type = "sqlite"``): the storage hooks.

How the semantics table maps onto the jobs table (the lease state machine
above owns the rules; this is where they meet SQL):

* **Delays are native**: a job waits in the table until its ``run_at``,
  whatever the delay, and survives restarts; nothing goes through the
  scheduler (:attr:`SqlProvider.max_native_delay` is unbounded).
* **Claims** take up to the waiting stream's free credits in one statement
  (:mod:`._claim`); an idle stream parks until a wake-up (:mod:`._wake`).
* **Writes that record what the state machine decided** run to their end
  even when their caller is cancelled (:mod:`._inflight`).
* **Leases** live in this gateway's state machine; the row names the leasing
  gateway. A gateway that dies has its leases released by another one once
  its heartbeat lapses (:mod:`._fleet`); a job cancelled through another
  gateway is revoked here at its ``NOTIFY``.
* **Writes** are one transaction per call, one statement per batch (:mod:`._writes`).
* **Operators' hooks** (replay, purge, pause: :mod:`._operations`; workers
  of other gateways: :mod:`.._worker_rows`) keep their state in tables, so every
  gateway on the database and a restarted one see it.
* **Flow control** (concurrency keys, limits, rates, fair dispatch) is
  enforced in the claims of every gateway: :mod:`._flow`, :mod:`._lanes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Collection, Sequence
from typing import IO, Any, ClassVar

from sqlalchemy import text

from jobwire.gateway._db import create_engine, open_schema
from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._limits import QueueLimits
from jobwire.gateway._models import JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway._provider_config import PostgresProviderSettings, SqliteProviderSettings
from jobwire.gateway.providers._flow import Hold
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
from jobwire.gateway.providers.sql._claim import Claims
from jobwire.gateway.providers.sql._dialect import Sql, lock_sqlite_file
from jobwire.gateway.providers.sql._fleet import Fleet
from jobwire.gateway.providers.sql._flow import Flow
from jobwire.gateway.providers.sql._gather import Gathered
from jobwire.gateway.providers.sql._handover import Handover
from jobwire.gateway.providers.sql._inflight import InFlight
from jobwire.gateway.providers.sql._listen import Listener
from jobwire.gateway.providers.sql._operations import Operations
from jobwire.gateway.providers.sql._reads import Reads
from jobwire.gateway.providers.sql._tables import SCHEMA_VERSION, make_tables, migrations
from jobwire.gateway.providers.sql._upkeep import maintain
from jobwire.gateway.providers.sql._wake import Wakeups
from jobwire.gateway.providers.sql._writes import Writes

logger = logging.getLogger("jobwire.gateway.sql")

# Key of the PostgreSQL advisory lock that serializes table creation when
# several gateways start at once (the scheduler and SQS records use others).
_SCHEMA_LOCK = 0x6A6F627173


def _direct() -> Any:
    # Imported with PostgreSQL only: asyncpg comes with the postgres extra.
    from jobwire.gateway.providers.sql import _direct as module

    return module


class SqlProvider(QueueProvider[None]):
    """Queues in a SQL table, on PostgreSQL (N gateways) or a SQLite file (one gateway)."""

    max_native_delay: ClassVar[float | None] = math.inf
    supports_flow_control: ClassVar[bool] = True

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
        async_engine = create_engine(
            self._url,
            what="provider.database_url",
            pool_size=settings.pool_size if postgres else None,
            synchronous=False,
        )
        prefix = settings.table_prefix
        tables, gateway_id = make_tables(prefix), uuid.uuid4().hex
        direct = (
            _direct().Direct(
                self._url,
                settings.pool_size,
                tables.jobs.name,
                tables.paused.name,
                tables.flow.name,
                gateway_id,
            )
            if postgres
            else None
        )
        self._sql = Sql(engine, async_engine, tables, gateway_id, prefix, direct=direct)
        self._wakeups = Wakeups()
        self._flow = Flow(self._sql)
        self._handover = Handover(self._wakeups, self._flow.known)
        self._writes = Writes(self._sql, self.dedup, self._flow.known, self._handover)
        self._reads = Reads(self._sql, self.dedup)
        self._operations = Operations(self._sql)
        # A SQLite file serves one gateway: no other gateway's streams to show.
        self.workers = WorkerRows(self._sql.tables.workers, self._sql.write) if postgres else None
        if postgres:  # the maintenance tick (._upkeep)
            self.look_interval = settings.heartbeat_interval.total_seconds()
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
        self._lock: IO[bytes] | None = None
        self._inflight = InFlight()
        # The endings of frames that come while one is written go in one statement.
        self._endings = Gathered(self._writes.settle, self._inflight.track)
        self._claims = Claims(
            self._sql,
            self._flow,
            self._writes,
            self._wakeups,
            self._inflight,
            settings.poll_interval.total_seconds(),
            # Inserts write jobs leased to parked streams on PostgreSQL only:
            # there a claim is a round trip on the path from enqueue to handler.
            self._handover if postgres else None,
        )
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
                migrations=migrations(self._settings.table_prefix),
            )
            if self._sql.direct is not None:
                await self._sql.direct.open()
            await self._fleet.join()
            await self._fleet.reap()
            await self._warm_up()
            if self._listener is not None:
                await self._listener.start()
        except BaseException:
            await self._release()
            raise
        self._maintenance = asyncio.get_running_loop().create_task(
            maintain(self._sql, self._fleet, self._settings, self._inflight.writing)
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
        await self._inflight.drain()
        if self._listener is not None:
            await self._listener.close()
        try:
            await self._fleet.leave()
        except UnavailableError as error:
            logger.warning("could not remove this gateway's row (%s)", error)
        await self._release()

    async def _release(self) -> None:
        if self._sql.direct is not None:
            await self._sql.direct.close()
        await self._sql.engine.dispose()
        await self._sql.async_engine.dispose()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # Jobs --------------------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs in one transaction; answered after the commit."""
        results, waiting = await self._writes.insert(jobs, time.time())
        fresh = [job for job, duplicate in results if not duplicate]
        await self._flow.mark_keyed({job.queue for job in fresh if job.concurrency_key})
        self._wakeups.notify(waiting)
        return results

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job from the table, once this gateway's write of it committed."""
        await self._inflight.committed(job_id)
        return await self._reads.get(job_id, time.time())

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List from the table, newest first."""
        return await self._reads.list_jobs(where, limit, cursor, time.time())

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts from the table; for queues with limits, the jobs each holds back."""
        now = time.time()
        rows = await self._reads.counts(queue, now)
        flowing = await self._flow.queues()
        for row in rows:
            limits = flowing.get(row.queue)
            if limits is not None and limits.limited:
                pending = row.by_state[JobState.PENDING]
                row.held = await self._flow.held(row.queue, limits, pending, now)
        return rows

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys."""
        return await self._reads.key_holders(keys, time.time())

    async def cancel(
        self, job_id: str, message: str, lease: Lease[None] | None
    ) -> JobRecord | None:
        """Cancel in the table; a gateway leasing the job elsewhere is notified."""
        record = await self._inflight.unstoppable(self._writes.cancel(job_id, message, time.time()))
        if record is not None and record.queue in self._flow.known():
            self._wakeups.notify({record.queue})  # its slot may be free
        return record

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
        purged = await self._operations.purge(
            selector, include_processing=include_processing, validate_only=validate_only
        )
        if purged.processing:
            self._wakeups.notify(None)  # slots of flow control may be free
        return purged

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue for every gateway on the database."""
        await self._operations.set_paused(queue, paused)
        if not paused:
            self._wakeups.notify({queue})

    # Leases ------------------------------------------------------------------

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[None]]:
        """Claim ready jobs, parking until a wake-up when there are none."""
        return await self._claims.claim(consumer, max_jobs)

    async def settle(self, endings: Sequence[Ending[None]]) -> Sequence[bool] | None:
        """Record the endings of one frame in one statement."""
        records = []
        for ending in endings:
            job = ending.lease.job
            job.end_attempt(ending.end)
            records.append(job)
        written = await self._inflight.unstoppable(
            self._inflight.written(records, self._endings.write(records))
        )
        flowing = self._flow.known()
        self._wakeups.notify(
            {r.queue for r in records if not r.state.is_terminal or r.queue in flowing}
        )
        if len(written) == len(records):
            return None
        return [record.id in written for record in records]

    async def save_progress(self, lease: Lease[None]) -> None:
        """Store the job's progress."""
        await self._inflight.unstoppable(
            self._inflight.written([lease.job], self._writes.save_progress(lease.job))
        )

    # Flow control ------------------------------------------------------------

    async def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Store a queue's limits for every gateway; claims waiting on it look again."""
        await self._flow.set_limits(queue, limits)
        self._wakeups.notify({queue})

    async def limits(self) -> dict[str, QueueLimits]:
        """Every configured queue's limits, from the table."""
        return await self._flow.stored()

    async def queue_limits(self, queue: str) -> QueueLimits:
        """One queue's limits, from the table."""
        return await self._flow.limits(queue)

    async def key_jobs(self, queue: str, key: str) -> list[JobRecord]:
        """A key's pending and processing jobs, oldest first."""
        return await self._flow.key_jobs(queue, key, time.time())

    async def hold(self, job: JobRecord) -> Hold | None:
        """The limit holding a pending job back now, if one does."""
        return await self._flow.hold(job, time.time())

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
        self._inflight.spawn(self._fleet.check_leases())
