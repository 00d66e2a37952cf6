"""What clients ask of the job records as a whole: job listings and queue counts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._db import filter_clauses
from jobwire.gateway._models import JobFilter, JobRecord, JobState
from jobwire.gateway.providers._records._tables import (
    PENDING,
    RecordTables,
    effective,
    from_db_time,
    micros,
    parse_cursor,
    record_of,
    to_datetime,
)
from jobwire.gateway.providers._types import QueueCounts

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
"""Opens a connection in a transaction."""


async def list_page(
    tables: RecordTables,
    connection: Connect,
    where: JobFilter,
    limit: int,
    cursor: str | None,
    now: float,
) -> tuple[list[JobRecord], str | None]:
    """Up to ``limit`` committed jobs, newest first after ``cursor``, and the next cursor."""
    stamp = to_datetime(now)
    cols = tables.jobs.c
    query = select(tables.jobs).order_by(cols.create_time.desc(), cols.id.desc()).limit(limit + 1)
    query = query.where(*filter_clauses(where, cols.queue, cols.type, cols.id))
    if where.states:
        names = [state.name.lower() for state in where.states]
        query = query.where(tables.effective_state(stamp).in_(names))
    if cursor is not None:
        created, job_id = parse_cursor(cursor)
        query = query.where(
            or_(
                cols.create_time < created,
                and_(cols.create_time == created, cols.id < job_id),
            )
        )
    async with connection() as conn:
        rows = list((await conn.execute(query)).mappings())
    page = [effective(record_of(row), now) for row in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    last = rows[limit - 1]
    return page, f"{micros(last['create_time'])}.{last['id']}"


async def queue_counts(
    tables: RecordTables, connection: Connect, queue: str | None, now: float
) -> dict[str, QueueCounts]:
    """Per queue, of the committed records: jobs by state, oldest pending wait, pending types."""
    stamp = to_datetime(now)
    cols = tables.jobs.c
    state = tables.effective_state(stamp)
    by_state = select(cols.queue, state, func.count()).group_by(cols.queue, state)
    since = case((cols.state == PENDING, cols.update_time), else_=cols.schedule_time)
    oldest = select(cols.queue, func.min(since)).where(state == PENDING).group_by(cols.queue)
    types = select(cols.queue, cols.type).where(state == PENDING).distinct()
    if queue is not None:
        by_state = by_state.where(cols.queue == queue)
        oldest = oldest.where(cols.queue == queue)
        types = types.where(cols.queue == queue)
    rows: dict[str, QueueCounts] = {}
    async with connection() as conn:
        for name, state_name, count in await conn.execute(by_state):
            row = rows.setdefault(name, QueueCounts(name, dict.fromkeys(JobState, 0), 0.0))
            row.by_state[JobState[state_name.upper()]] = count
        for name, first in await conn.execute(oldest):
            if name in rows and first is not None:
                waited = now - from_db_time(first).timestamp()
                rows[name].oldest_pending_age = max(0.0, waited)
        pending: dict[str, set[str]] = {}
        for name, job_type in await conn.execute(types):
            pending.setdefault(name, set()).add(job_type)
    for name, names in pending.items():
        if name in rows:
            rows[name].pending_types = frozenset(names)
    return rows
