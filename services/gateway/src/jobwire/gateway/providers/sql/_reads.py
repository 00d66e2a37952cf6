"""Reads of ``<prefix>jobs``: one job, a page of jobs, the counts of a queue.

Every read answers from the table, so it is right across all gateways; a
waiting job whose time came reads as pending.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select, text

from jobwire.gateway._db import filter_clauses
from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._errors import InvalidPageTokenError
from jobwire.gateway._models import JobFilter, JobRecord, JobState
from jobwire.gateway.providers._types import QueueCounts
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._rows import record_of
from jobwire.gateway.providers.sql._tables import WAITING_SQL, effective_state
from jobwire.gateway.providers.sql._writes import key_holders


class Reads:
    """The provider's reads."""

    def __init__(self, sql: Sql, dedup: DedupRule) -> None:
        self._sql = sql
        self._dedup = dedup

    async def get(self, job_id: str, now: float) -> JobRecord | None:
        """Return a job as clients see it, or None."""
        if self._sql.direct is not None:  # one round trip: every watch starts with this read
            found = await self._sql.direct.get(job_id)
        else:
            c = self._sql.jobs.c
            async with self._sql.read() as conn:
                row = (await conn.execute(select(self._sql.jobs).where(c.id == job_id))).mappings()
                found = row.first()
        return None if found is None else record_of(found, now)

    async def get_many(self, job_ids: Collection[str], now: float) -> list[JobRecord]:
        """The stored ones of ``job_ids``, as clients see them, 1000 per statement."""
        c = self._sql.jobs.c
        ids = list(job_ids)
        found: list[JobRecord] = []
        async with self._sql.read() as conn:
            for start in range(0, len(ids), 1000):
                chunk = ids[start : start + 1000]
                rows = await conn.execute(select(self._sql.jobs).where(c.id.in_(chunk)))
                found.extend(record_of(row, now) for row in rows.mappings())
        return found

    async def states(self, job_ids: Collection[str]) -> dict[str, tuple[int, str | None]]:
        """State and leasing gateway of each of ``job_ids`` still stored."""
        c = self._sql.jobs.c
        async with self._sql.read() as conn:
            rows = await conn.execute(
                select(c.id, c.state, c.gateway_id).where(c.id.in_(list(job_ids)))
            )
            return {job_id: (state, gateway) for job_id, state, gateway in rows}

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None, now: float
    ) -> tuple[list[JobRecord], str | None]:
        """Newest first; the cursor is the ``seq`` of the last job returned."""
        if cursor is not None and not cursor.isdigit():
            raise InvalidPageTokenError("page_token", "not a token from this gateway")
        jobs = self._sql.jobs
        c = jobs.c
        query = select(jobs).order_by(c.seq.desc()).limit(limit + 1)
        query = query.where(*filter_clauses(where, c.queue, c.type, c.id))
        if where.states:
            query = query.where(effective_state(jobs, now).in_([s.value for s in where.states]))
        if cursor is not None:
            query = query.where(c.seq < int(cursor))
        async with self._sql.read() as conn:
            rows = list((await conn.execute(query)).mappings())
        page = [record_of(row, now) for row in rows[:limit]]
        if len(rows) <= limit:
            return page, None
        return page, str(rows[limit - 1]["seq"])

    async def counts(self, queue: str | None, now: float) -> list[QueueCounts]:
        """Per queue: jobs by state, the oldest ready job's wait, the ready types."""
        jobs = self._sql.jobs
        c = jobs.c
        state = effective_state(jobs, now).label("shown")
        by_state = select(c.queue, state, func.count()).group_by(c.queue, text("shown"))
        ready = (text(WAITING_SQL), c.run_at <= now)
        oldest = select(c.queue, func.min(c.run_at)).where(*ready).group_by(c.queue)
        types = select(c.queue, c.type).where(*ready).distinct()
        if queue is not None:
            by_state = by_state.where(c.queue == queue)
            oldest = oldest.where(c.queue == queue)
            types = types.where(c.queue == queue)
        rows: dict[str, QueueCounts] = {}
        pending: dict[str, set[str]] = {}
        async with self._sql.read() as conn:
            for name, shown, count in await conn.execute(by_state):
                row = rows.setdefault(name, QueueCounts(name, dict.fromkeys(JobState, 0), 0.0))
                row.by_state[JobState(shown)] = count
            for name, first in await conn.execute(oldest):
                if name in rows and first is not None:
                    rows[name].oldest_pending_age = max(0.0, now - float(first))
            for name, job_type in await conn.execute(types):
                pending.setdefault(name, set()).add(job_type)
            paused_queues = self._sql.tables.paused
            paused = set(await conn.scalars(select(paused_queues.c.queue)))
        for name, kinds in pending.items():
            if name in rows:
                rows[name].pending_types = frozenset(kinds)
        # A paused queue is listed even when it holds no job.
        names = sorted({*rows, *paused}) if queue is None else [queue]
        counts = [rows.get(n) or QueueCounts(n, dict.fromkeys(JobState, 0), 0.0) for n in names]
        for row in counts:
            row.paused = row.queue in paused
        return counts

    async def key_holders(self, keys: Collection[str], now: float) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys now."""
        async with self._sql.read() as conn:
            return await key_holders(self._sql, conn, keys, now, self._dedup)
