"""Bounded history: finished jobs pruned by age and by count, in small batches.

``RetryJobs`` request ids are kept as long as finished jobs
(``history_retention``): a request repeated later replays again.

Each batch is its own short transaction deleting at most :data:`BATCH` rows
found through the partial index on finished jobs, so pruning never holds
locks for long, and claims and enqueues go on between batches.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import ColumnElement, and_, delete, or_, select, text

from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._tables import TERMINAL

logger = logging.getLogger("jobwire.gateway.sql")

BATCH = 1000
_FINISHED = f"state IN ({', '.join(str(s) for s in TERMINAL)})"


async def prune(sql: Sql, *, now: float, max_age: float, max_count: int) -> int:
    """Delete finished jobs older than ``max_age`` or beyond the newest ``max_count``."""
    c = sql.jobs.c
    pruned = await _delete_finished(sql, c.end_time < now - max_age)
    async with sql.read() as conn:
        # The newest finished job beyond the count: it and every older one go.
        # (Jobs acked in one frame end at the same instant: seq breaks the tie.)
        beyond = (
            await conn.execute(
                select(c.end_time, c.seq)
                .where(text(_FINISHED))
                .order_by(c.end_time.desc(), c.seq.desc())
                .offset(max_count)
                .limit(1)
            )
        ).first()
    if beyond is not None:
        end, seq = beyond
        older = or_(c.end_time < end, and_(c.end_time == end, c.seq <= seq))
        pruned += await _delete_finished(sql, older)
    if pruned:
        logger.info("pruned %d finished jobs", pruned)
    replays = sql.tables.replays
    async with sql.write() as conn:
        await conn.execute(delete(replays).where(replays.c.create_time < now - max_age))
    return pruned


async def _delete_finished(sql: Sql, which: ColumnElement[bool]) -> int:
    c = sql.jobs.c
    batch = select(c.seq).where(text(_FINISHED), which).limit(BATCH).scalar_subquery()
    total = 0
    while True:
        async with sql.write() as conn:
            done = await conn.execute(delete(sql.jobs).where(c.seq.in_(batch)))
        total += done.rowcount
        if done.rowcount < BATCH:
            return total
        await asyncio.sleep(0)  # let claims and enqueues in between batches
