"""Flow control on the SQL tables: each queue's limits, token bucket and rotation, in one row.

A queue with limits, or with jobs that carry a concurrency key, has a row in
``<prefix>queue_flow``: its limits (as ``UpdateQueueConfig`` or the TOML set
them), its rate's token bucket (tokens and when they were counted) and the
key its rotation served last. Every claim of such a queue locks that row
first (``FOR UPDATE``; on SQLite the one writer), so the claims of every
gateway on the database take turns per queue, and what they read is exact:

* the jobs *processing* per key and in all are counted from the table (the
  partial index ``<prefix>jobs_running``), so a slot is freed by whatever
  ends the processing (an ack, a nack, an expired or released lease, a dead
  gateway's jobs released by another one, a cancel, a purge) with nothing
  to keep in step;
* the bucket is refilled from the row's time and spent in the same
  transaction, so a rate holds across gateways;
* the rotation (:mod:`._lanes`) goes on after the key served last.

Whatever frees a slot (an ending, a cancel, a purge) sends the ready
``NOTIFY``, so parked claims look again at once. Each gateway keeps the list
of such queues for :data:`FRESH` seconds (claims of other queues take the
plain one-statement path); a limit set through another gateway is therefore
honoured here within that, and at once by this gateway's claims.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import Insert, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._limits import NO_LIMITS, QueueLimits
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._flow import HeldCounts, Hold, held_counts, hold_of, tokens_at, whole
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._rows import record_of
from jobwire.gateway.providers.sql._tables import PROCESSING, WAITING_SQL

FRESH = 0.5
"""Seconds a gateway keeps its list of the queues under flow control."""


def limits_of(row: Any) -> QueueLimits:
    """The limits stored in a ``queue_flow`` row (``NO_LIMITS`` when never configured)."""
    stored = row["limits"]
    return NO_LIMITS if stored is None else QueueLimits.from_json(stored)


class Flow:
    """The queues under flow control, their rows, and the reads that explain a held job."""

    def __init__(self, sql: Sql) -> None:
        self._sql = sql
        self._queues: dict[str, QueueLimits] = {}
        self._read_at = -math.inf
        self._keyed: set[str] = set()  # queues recorded as keyed, by any gateway

    # Which queues -------------------------------------------------------------

    async def queues(self) -> Mapping[str, QueueLimits]:
        """The queues whose claims go through the lanes, with their limits (read every FRESH s)."""
        if time.monotonic() - self._read_at >= FRESH:
            table = self._sql.tables.flow
            async with self._sql.read() as conn:
                rows = (await conn.execute(select(table))).mappings().all()
            found: dict[str, QueueLimits] = {}
            for row in rows:
                limits = limits_of(row)
                if row["keyed"] or limits.limited:
                    found[row["queue"]] = limits
                if row["keyed"]:
                    self._keyed.add(row["queue"])
            self._queues = found
            self._read_at = time.monotonic()
        return self._queues

    def known(self) -> Collection[str]:
        """The queues under flow control as last read (no database access)."""
        return self._queues.keys()

    async def mark_keyed(self, queues: Collection[str]) -> None:
        """Record that ``queues`` hold jobs with concurrency keys: claims rotate across keys."""
        new = set(queues) - self._keyed
        if not new:
            return
        now = time.time()
        async with self._sql.write() as conn:
            for queue in sorted(new):
                await conn.execute(self._upsert(queue, now, keyed=True))
        self._keyed |= new
        self._read_at = -math.inf

    def _upsert(self, queue: str, now: float, **changes: Any) -> Insert:
        table = self._sql.tables.flow
        dialect: Any = postgresql if self._sql.postgres else sqlite
        fresh = {
            "limits": None,
            "keyed": False,
            "tokens": 0.0,
            "refilled": now,
            "turn": "",
            "served": 0,
        }
        statement = dialect.insert(table).values(
            queue=queue, update_time=now, **{**fresh, **changes}
        )
        upsert: Insert = statement.on_conflict_do_update(
            index_elements=[table.c.queue], set_={**changes, "update_time": now}
        )
        return upsert

    # Limits -------------------------------------------------------------------

    async def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Store a queue's limits; its bucket keeps the tokens it has, up to the new burst."""
        table = self._sql.tables.flow
        now = time.time()
        async with self._sql.write() as conn:
            query = select(table).where(table.c.queue == queue).with_for_update()
            row = (await conn.execute(query)).mappings().first()
            rate, old = limits.rate, None if row is None else limits_of(row).rate
            tokens = float(rate.burst) if rate is not None else 0.0
            if row is not None and rate is not None and old is not None:
                tokens = min(tokens, tokens_at(old, row["tokens"], row["refilled"], now))
            stored = None if limits.empty else limits.as_json()
            await conn.execute(self._upsert(queue, now, limits=stored, tokens=tokens, refilled=now))
            await self._sql.notify_ready(conn, {queue})
        self._read_at = -math.inf

    async def stored(self) -> dict[str, QueueLimits]:
        """Every configured queue's limits."""
        table = self._sql.tables.flow
        async with self._sql.read() as conn:
            rows = (await conn.execute(select(table).where(table.c.limits.is_not(None)))).mappings()
            return {row["queue"]: limits_of(row) for row in rows}

    async def limits(self, queue: str) -> QueueLimits:
        """One queue's limits (``NO_LIMITS`` when never configured)."""
        table = self._sql.tables.flow
        async with self._sql.read() as conn:
            row = (await conn.execute(select(table).where(table.c.queue == queue))).mappings()
            found = row.first()
        return NO_LIMITS if found is None else limits_of(found)

    async def freed(self, queues: Collection[str]) -> None:
        """Tell every gateway that slots of ``queues`` were freed outside an ending."""
        if self._sql.postgres and queues:
            async with self._sql.write() as conn:
                await self._sql.notify_ready(conn, set(queues))

    # Why a job waits ---------------------------------------------------------

    async def hold(self, job: JobRecord, now: float) -> Hold | None:
        """The limit holding a pending job back now, if one does."""
        if job.state is not JobState.PENDING:
            return None
        limits = (await self.queues()).get(job.queue)
        if limits is None or not limits.limited:
            return None
        async with self._sql.read() as conn:
            running = await processing(self._sql, conn, job.queue)
            tokens = await self._tokens(conn, job.queue, limits, now)
        return hold_of(
            limits,
            job.queue,
            job.concurrency_key,
            running.get(job.concurrency_key, 0),
            sum(running.values()),
            tokens,
        )

    async def held(self, queue: str, limits: QueueLimits, pending: int, now: float) -> HeldCounts:
        """A queue's pending jobs held back, per limit."""
        c = self._sql.jobs.c
        async with self._sql.read() as conn:
            running = await processing(self._sql, conn, queue)
            per_key = limits.max_concurrency_per_key
            busy = [k for k, n in running.items() if k and per_key and n >= per_key]
            waiting: dict[str, int] = {}
            if busy:
                query = (
                    select(c.concurrency_key, func.count())
                    .where(c.queue == queue, c.concurrency_key.in_(busy), text(WAITING_SQL))
                    .where(c.run_at <= now)
                    .group_by(c.concurrency_key)
                )
                waiting = dict.fromkeys(busy, 0)
                waiting.update({key: count for key, count in await conn.execute(query)})
            tokens = await self._tokens(conn, queue, limits, now)
        return held_counts(limits, pending, waiting, sum(running.values()), tokens)

    async def key_jobs(self, queue: str, key: str, now: float) -> list[JobRecord]:
        """A key's pending and processing jobs, oldest first."""
        jobs = self._sql.jobs
        c = jobs.c
        held = f"({WAITING_SQL} AND run_at <= :due OR state = {PROCESSING})"
        due = text(held).bindparams(due=now)
        query = select(jobs).where(c.queue == queue, c.concurrency_key == key, due).order_by(c.seq)
        async with self._sql.read() as conn:
            return [record_of(row, now) for row in (await conn.execute(query)).mappings()]

    async def _tokens(
        self, conn: AsyncConnection, queue: str, limits: QueueLimits, now: float
    ) -> int | None:
        if limits.rate is None:
            return None
        table = self._sql.tables.flow
        row = (await conn.execute(select(table).where(table.c.queue == queue))).mappings().first()
        if row is None:
            return None
        return whole(tokens_at(limits.rate, row["tokens"], row["refilled"], now))


async def processing(sql: Sql, conn: AsyncConnection, queue: str) -> dict[str, int]:
    """A queue's jobs processing now, per concurrency key ("" for jobs without one)."""
    c = sql.jobs.c
    query = (
        select(c.concurrency_key, func.count())
        .where(c.queue == queue, c.state == PROCESSING)
        .group_by(c.concurrency_key)
    )
    return {key: count for key, count in await conn.execute(query)}
