"""What clients ask of the SQS job records as a whole: job listings and queue counts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._db import filter_clauses
from jobwire.gateway._models import JobFilter, JobRecord, JobState
from jobwire.gateway.providers._types import QueueCounts
from jobwire.gateway.providers.sqs._tables import COLUMNS as _J
from jobwire.gateway.providers.sqs._tables import (
    PENDING,
    StoredJob,
    effective,
    effective_state,
    from_db_time,
    micros,
    parse_cursor,
    record_of,
    to_datetime,
)

Connect = Callable[[], AbstractAsyncContextManager[AsyncConnection]]
"""Opens a connection in a transaction."""


async def list_page(
    connection: Connect, where: JobFilter, limit: int, cursor: str | None, now: float
) -> tuple[list[JobRecord], str | None]:
    """Up to ``limit`` committed jobs, newest first after ``cursor``, and the next cursor."""
    stamp = to_datetime(now)
    query = select(StoredJob).order_by(_J.create_time.desc(), _J.id.desc()).limit(limit + 1)
    query = query.where(*filter_clauses(where, _J.queue, _J.type, _J.id))
    if where.states:
        names = [state.name.lower() for state in where.states]
        query = query.where(effective_state(stamp).in_(names))
    if cursor is not None:
        created, job_id = parse_cursor(cursor)
        query = query.where(
            or_(
                _J.create_time < created,
                and_(_J.create_time == created, _J.id < job_id),
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
    connection: Connect, queue: str | None, now: float
) -> dict[str, QueueCounts]:
    """Per queue, of the committed records: jobs by state, oldest pending wait, pending types."""
    stamp = to_datetime(now)
    state = effective_state(stamp)
    by_state = select(_J.queue, state, func.count()).group_by(_J.queue, state)
    since = case((_J.state == PENDING, _J.update_time), else_=_J.schedule_time)
    oldest = select(_J.queue, func.min(since)).where(state == PENDING).group_by(_J.queue)
    types = select(_J.queue, _J.type).where(state == PENDING).distinct()
    if queue is not None:
        by_state = by_state.where(_J.queue == queue)
        oldest = oldest.where(_J.queue == queue)
        types = types.where(_J.queue == queue)
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
