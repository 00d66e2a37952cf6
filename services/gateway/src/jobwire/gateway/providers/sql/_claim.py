"""Claims: up to N ready jobs of a consumer's queues in one statement.

PostgreSQL::

    WITH picked AS (SELECT seq FROM jobs WHERE queue IN (…) AND state IN (waiting)
                    AND run_at <= now ORDER BY priority DESC, run_at, seq
                    LIMIT n FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET state = processing, attempt = attempt + 1, … FROM picked
    WHERE jobs.seq = picked.seq RETURNING jobs.*

Gateways claiming at once skip each other's rows instead of waiting on them.
Queues with a row in ``<prefix>paused_queues`` are skipped (``queue NOT IN
(SELECT queue FROM paused_queues)``), so a pause holds on every gateway at
once. SQLite has no row locks (``FOR UPDATE`` is left out of its SQL); its one
writer at a time makes the same statement atomic. The waiting-state test is
literal SQL, the predicate of the partial index ``<prefix>jobs_ready``, so
that a prepared statement's generic plan can still use that index.
"""

from __future__ import annotations

from sqlalchemy import Update, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._models import JobRecord
from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._rows import record_of
from jobwire.gateway.providers.sql._tables import PROCESSING, WAITING

_WAITING = f"state IN ({', '.join(str(s) for s in WAITING)})"


def claim_statement(sql: Sql, consumer: Consumer, limit: int, now: float) -> Update:
    """The claim of up to ``limit`` ready jobs for ``consumer``."""
    c = sql.jobs.c
    pick = select(c.seq).where(
        c.queue.in_(consumer.queues),
        text(_WAITING),
        c.run_at <= now,
        c.queue.not_in(select(sql.tables.paused.c.queue)),
    )
    if consumer.job_types:
        pick = pick.where(c.type.in_(sorted(consumer.job_types)))
    picked = (
        pick.order_by(c.priority.desc(), c.run_at, c.seq)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    return (
        update(sql.jobs)
        .where(c.seq == picked.c.seq)
        .values(
            state=PROCESSING,
            attempt=c.attempt + 1,
            worker_id=consumer.worker_id,
            gateway_id=sql.gateway_id,
            update_time=now,
            schedule_time=None,
        )
        .returning(sql.jobs)
    )


async def claim(sql: Sql, consumer: Consumer, limit: int, now: float) -> list[JobRecord]:
    """Claim up to ``limit`` jobs, in claim order; empty when none is ready."""
    # Committed asynchronously (PostgreSQL): a claim a database crash forgets
    # makes its jobs pending again, a redelivery, which at-least-once allows.
    async with sql.write(async_commit=True) as conn:
        rows = list((await conn.execute(claim_statement(sql, consumer, limit, now))).mappings())
    # RETURNING keeps no order: put the jobs back in the order they were picked.
    rows.sort(key=lambda row: (-row["priority"], row["run_at"], row["seq"]))
    return [record_of(row) for row in rows]


async def next_due(sql: Sql, conn: AsyncConnection, consumer: Consumer) -> float | None:
    """When the consumer's earliest waiting job may run, or None when there is none."""
    c = sql.jobs.c
    query = select(func.min(c.run_at)).where(
        c.queue.in_(consumer.queues),
        text(_WAITING),
        c.queue.not_in(select(sql.tables.paused.c.queue)),
    )
    if consumer.job_types:
        query = query.where(c.type.in_(sorted(consumer.job_types)))
    due = await conn.scalar(query)
    return None if due is None else float(due)
