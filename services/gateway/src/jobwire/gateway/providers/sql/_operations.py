"""Operators' writes on the SQL tables: replay, purge, pause (issue 18).

Each is one transaction of a few statements, whatever the number of jobs:

* **Replay** by selector is one ``UPDATE … WHERE`` (10,000 dead jobs are one
  statement, not one round trip per job); its request id is recorded in
  ``<prefix>replay_requests`` in the same transaction, so a repeated
  ``RetryJobs`` replays nothing and answers the recorded count.
* **Purge** is one ``DELETE … WHERE`` (and, on a validation, the same
  ``WHERE`` counted); a purged job leased by another gateway is revoked there
  through the cancel ``NOTIFY`` (its provider calls ``host.lost``).
* **Pause** is a row of ``<prefix>paused_queues``, which the claim statement
  reads (:mod:`._claim`); a resume sends the ready ``NOTIFY``.

A replayed job takes its deduplication key back unless another unfinished job
holds it (then the replayed job keeps no key: the partial unique index allows
one holder).
"""

from __future__ import annotations

import time

from sqlalchemy import (
    ColumnElement,
    FromClause,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._db import selector_clauses
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import REPLAYABLE, JobRecord, JobState
from jobwire.gateway.providers._types import Purged
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._rows import record_of
from jobwire.gateway.providers.sql._tables import PROCESSING, UNFINISHED, effective_state

_PURGED = "job purged"


class Operations:
    """Replay, purge and pause on the provider's tables."""

    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    # Selection -----------------------------------------------------------------

    def _where(
        self, jobs: FromClause, selector: JobSelector, states: frozenset[JobState], now: float
    ) -> list[ColumnElement[bool]]:
        """``selector`` (and ``states``, as clients see them) as conditions on ``jobs``."""
        c = jobs.c
        where = selector_clauses(
            selector,
            queue=c.queue,
            job_type=c.type,
            job_id=c.id,
            create_time=c.create_time,
            as_stored=float,
            attributes=c.attributes,
        )
        if states:
            where.append(effective_state(jobs, now).in_(sorted(s.value for s in states)))
        if selector.error_contains:
            # Case-sensitive, as JobSelector.matches (SQLite's LIKE is not).
            message = c.last_error["message"].as_string()
            find = func.strpos if self._sql.postgres else func.instr
            where.append(find(message, selector.error_contains) > 0)
        return where

    # Replay ------------------------------------------------------------------

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Make one dead, failed or cancelled job pending again."""
        jobs = self._sql.jobs
        c = jobs.c
        now = time.time()
        async with self._sql.write() as conn:
            query = select(jobs).where(c.id == job_id).with_for_update()
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                return None
            record = record_of(row, now)
            if record.state not in REPLAYABLE:
                return record, False
            record.replay(now, payload, max_retries)
            if record.deduplication_key and await self._key_taken(conn, row["seq"], record):
                record.deduplication_key = ""
            await conn.execute(
                update(jobs)
                .where(c.seq == row["seq"])
                .values(
                    **_replayed(now),
                    payload=record.payload,
                    max_retries=record.max_retries,
                    deduplication_key=record.deduplication_key or None,
                )
            )
            await self._sql.notify_ready(conn, {record.queue})
        return record, True

    async def _key_taken(self, conn: AsyncConnection, seq: int, record: JobRecord) -> bool:
        c = self._sql.jobs.c
        holder = select(c.seq).where(
            c.deduplication_key == record.deduplication_key,
            c.state.in_(UNFINISHED),
            c.seq != seq,
        )
        return (await conn.scalar(holder.limit(1))) is not None

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> tuple[int, set[str]]:
        """Replay the selected jobs in one statement; return the count and their queues.

        A ``request_id`` already recorded returns its count and changes nothing.
        """
        try:
            return await self._replay_jobs(selector, request_id)
        except IntegrityError:
            # Another gateway recorded the same request id meanwhile: its
            # transaction replayed the jobs, ours replayed nothing.
            if not request_id:
                raise
            async with self._sql.read() as conn:
                recorded = await self._recorded(conn, request_id)
            if recorded is None:
                raise
            return recorded, set()

    async def _recorded(self, conn: AsyncConnection, request_id: str) -> int | None:
        replays = self._sql.tables.replays
        count = await conn.scalar(select(replays.c.count).where(replays.c.request_id == request_id))
        return None if count is None else int(count)

    async def _replay_jobs(self, selector: JobSelector, request_id: str) -> tuple[int, set[str]]:
        jobs = self._sql.jobs
        c = jobs.c
        now = time.time()
        states = (selector.states or REPLAYABLE) & REPLAYABLE
        replays = self._sql.tables.replays
        async with self._sql.write() as conn:
            if request_id:
                recorded = await self._recorded(conn, request_id)
                if recorded is not None:
                    return recorded, set()
                # The request id's row first: a second call with the same id
                # (another gateway, at the same time) waits on it and then
                # fails to insert it, before it replays anything.
                await conn.execute(
                    insert(replays).values(request_id=request_id, count=0, create_time=now)
                )
            where = self._where(jobs, selector, states, now)
            # A key goes back to a replayed job unless an unfinished job holds
            # it, or a replayed one selected before it (lower seq) takes it.
            other = jobs.alias("other")
            o = other.c
            taken = exists().where(
                o.deduplication_key == c.deduplication_key,
                o.seq != c.seq,
                or_(
                    o.state.in_(UNFINISHED),
                    and_(o.seq < c.seq, *self._where(other, selector, states, now)),
                ),
            )
            statement = (
                update(jobs)
                .where(*where)
                .values(
                    **_replayed(now),
                    deduplication_key=case(
                        (and_(c.deduplication_key.is_not(None), taken), null()),
                        else_=c.deduplication_key,
                    ),
                )
                .returning(c.queue)
            )
            queues = list(await conn.scalars(statement))
            if request_id:
                await conn.execute(
                    update(replays)
                    .where(replays.c.request_id == request_id)
                    .values(count=len(queues))
                )
            await self._sql.notify_ready(conn, set(queues))
        return len(queues), set(queues)

    # Purge -------------------------------------------------------------------

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete (or count) the selected jobs; revoke other gateways' leases on them."""
        jobs = self._sql.jobs
        c = jobs.c
        now = time.time()
        where = self._where(jobs, selector, selector.states, now)
        if not include_processing:
            where.append(c.state != PROCESSING)
        if validate_only:
            async with self._sql.read() as conn:
                count = await conn.scalar(select(func.count()).select_from(jobs).where(*where))
            return Purged(int(count or 0))
        async with self._sql.write() as conn:
            leased: list[tuple[str, str | None, str]] = []
            if include_processing:
                query = select(c.id, c.gateway_id, c.queue).where(*where, c.state == PROCESSING)
                leased = [(i, g, q) for i, g, q in await conn.execute(query.with_for_update())]
            result = await conn.execute(delete(jobs).where(*where))
            for job_id, owner, _ in leased:
                if owner and owner != self._sql.gateway_id:
                    await self._sql.notify_cancel(conn, owner, job_id, _PURGED)
            # Slots of flow control freed: every gateway's claims look again.
            await self._sql.notify_ready(conn, {queue for _, _, queue in leased})
        return Purged(int(result.rowcount), tuple(job_id for job_id, _, _ in leased))

    # Pause -------------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Record or clear a queue's pause; a resume wakes every gateway's claims."""
        table = self._sql.tables.paused
        async with self._sql.write() as conn:
            await conn.execute(delete(table).where(table.c.queue == queue))
            if paused:
                await conn.execute(insert(table).values(queue=queue, pause_time=time.time()))
            else:
                await self._sql.notify_ready(conn, {queue})


def _replayed(now: float) -> dict[str, object]:
    """The columns of a job replayed at ``now`` (``JobRecord.replay``), ready at once."""
    return {
        "state": JobState.PENDING.value,
        "attempt": 0,
        "run_at": now,
        "update_time": now,
        "schedule_time": None,
        "end_time": None,
        "result": None,
        "result_content_type": "",
        "progress": None,
        "worker_id": "",
        "gateway_id": None,
    }
