"""The statements of a flow-controlled claim through SQLAlchemy, on either database.

A :class:`~._lanes.LaneStore` on one connection in a transaction: SQLite's
claims (PostgreSQL's go through asyncpg's pool, :mod:`._direct_lanes`).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import TextClause, Update, func, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._flow import limits_of, processing
from jobwire.gateway.providers.sql._lanes import Locked, lanes_query
from jobwire.gateway.providers.sql._tables import PROCESSING, WAITING_SQL


class SqlLanes:
    """A claim's statements on ``conn`` (a write transaction of ``sql``)."""

    def __init__(self, sql: Sql, conn: AsyncConnection) -> None:
        self._sql = sql
        self._conn = conn
        self._lanes = _lanes_text(sql.jobs.name)

    async def lock(self, queue: str, lanes: int, now: float) -> Locked | None:
        """Lock the queue's row, read its pause and processing jobs (its lanes: lane_keys)."""
        flow, paused = self._sql.tables.flow, self._sql.tables.paused
        query = select(flow).where(flow.c.queue == queue).with_for_update()
        row = (await self._conn.execute(query)).mappings().first()
        if row is None:
            return None
        held = select(func.count()).select_from(paused).where(paused.c.queue == queue)
        return Locked(
            limits=limits_of(row),
            tokens=row["tokens"],
            refilled=row["refilled"],
            turn=row["turn"],
            served=row["served"],
            paused=bool(await self._conn.scalar(held)),
            running=await processing(self._sql, self._conn, queue),
        )

    async def lane_keys(self, queue: str, turn: str, most: int, now: float) -> list[str]:
        """The first ``most`` keys with a job due after ``turn``, and around again."""
        found = await self._conn.scalars(
            self._lanes, {"queue": queue, "turn": turn, "most": most, "now": now}
        )
        return list(found)

    async def pick(
        self, consumer: Consumer, queue: str, wants: dict[str, int], now: float
    ) -> list[Any]:
        """Claim ``wants[key]`` ready jobs of each key in one statement."""
        c = self._sql.jobs.c
        parts: list[Any] = []
        for n, (key, count) in enumerate(wants.items()):
            lane = select(c.seq).where(
                c.queue == queue, c.concurrency_key == key, text(WAITING_SQL), c.run_at <= now
            )
            if consumer.job_types:
                lane = lane.where(c.type.in_(sorted(consumer.job_types)))
            lane = (
                lane.order_by(c.priority.desc(), c.run_at, c.seq)
                .limit(count)
                .with_for_update(skip_locked=True)
            )
            parts.append(select(lane.subquery(f"lane{n}").c.seq))
        chosen: Any = union_all(*parts) if len(parts) > 1 else parts[0]
        picked = chosen.cte("picked")
        statement = claimed(self._sql, consumer, now).where(c.seq.in_(select(picked.c.seq)))
        return list((await self._conn.execute(statement)).mappings())

    async def oldest(
        self, consumer: Consumer, queue: str, busy: list[str], limit: int, now: float
    ) -> list[tuple[int, str]]:
        """The oldest ready jobs of keys not ``busy``, locked."""
        c = self._sql.jobs.c
        query = select(c.seq, c.concurrency_key).where(
            c.queue == queue, text(WAITING_SQL), c.run_at <= now
        )
        if consumer.job_types:
            query = query.where(c.type.in_(sorted(consumer.job_types)))
        if busy:
            query = query.where(c.concurrency_key.not_in(busy))
        query = (
            query.order_by(c.priority.desc(), c.run_at, c.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [(seq, key) for seq, key in await self._conn.execute(query)]

    async def take(self, consumer: Consumer, seqs: list[int], now: float) -> list[Any]:
        """Claim these jobs."""
        statement = claimed(self._sql, consumer, now).where(self._sql.jobs.c.seq.in_(seqs))
        return list((await self._conn.execute(statement)).mappings())

    async def store(self, queue: str, tokens: float, turn: str, served: int, now: float) -> None:
        """Write the bucket's tokens and the rotation's place back."""
        flow = self._sql.tables.flow
        await self._conn.execute(
            update(flow)
            .where(flow.c.queue == queue)
            .values(tokens=tokens, refilled=now, turn=turn, served=served, update_time=now)
        )


@functools.cache
def _lanes_text(jobs: str) -> TextClause:
    # One claim builds one SqlLanes: the text is made once per table.
    return text(lanes_query(jobs, ":queue", ":turn", ":most", ":now"))


def claimed(sql: Sql, consumer: Consumer, now: float) -> Update:
    """The UPDATE that makes jobs ``consumer``'s (add the WHERE that picks them)."""
    c = sql.jobs.c
    return (
        update(sql.jobs)
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
