"""Claims: up to N ready jobs of a consumer's queues in one statement, and the waits between.

PostgreSQL (:mod:`._direct`)::

    WITH picked AS (SELECT p.seq FROM unnest(queues) AS q(name),
                    LATERAL (SELECT seq, priority, run_at FROM jobs WHERE queue = q.name
                             AND state IN (waiting) AND run_at <= now
                             ORDER BY priority DESC, run_at, seq
                             LIMIT n FOR UPDATE SKIP LOCKED) AS p
                    ORDER BY p.priority DESC, p.run_at, p.seq LIMIT n)
    UPDATE jobs SET state = processing, attempt = attempt + 1, … FROM picked
    WHERE jobs.seq = picked.seq RETURNING jobs.*

Each queue's ready jobs are read in claim order from the partial index
``<prefix>jobs_ready``, and each read stops at ``n``: a claim costs the
jobs it takes, not the backlog. SQLite keeps one read over every queue
(:func:`claim_statement`): a ``UNION ALL`` of per-queue reads drained a
third slower there.

Gateways claiming at once skip each other's rows instead of waiting on them.
Queues with a row in ``<prefix>paused_queues`` are skipped (``queue NOT IN
(SELECT queue FROM paused_queues)``), so a pause holds on every gateway at
once. SQLite has no row locks (``FOR UPDATE`` is left out of its SQL); its one
writer at a time makes the same statement atomic. The waiting-state test is
literal SQL, the predicate of the partial index ``<prefix>jobs_ready``, so
that a prepared statement's generic plan can still use that index.

Queues under flow control (:mod:`._flow`) are claimed from one at a time,
each in a transaction of its own (:mod:`._lanes`), after the others.

Between claims, a stream with nothing to take parks until a wake-up
(:mod:`._wake`), its earliest job's ``run_at``, the next token of a rate
that held its jobs back, or the poll interval (:class:`Claims`); this
gateway's streams take turns, the one that waited longest first. Jobs held
by a concurrency limit wait for the wake-up of the ending that frees a slot.
On PostgreSQL a parked stream also offers to take what an insert stores
(:mod:`._handover`): those jobs come to it leased, without a claim, and the
table is as idle as before, so the stream parks again without a look.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Collection, Sequence

from sqlalchemy import Update, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._models import JobRecord
from jobwire.gateway.providers._types import Claim, Consumer
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._flow import Flow
from jobwire.gateway.providers.sql._handover import Handover
from jobwire.gateway.providers.sql._inflight import InFlight
from jobwire.gateway.providers.sql._lane_store import SqlLanes, claimed
from jobwire.gateway.providers.sql._lanes import claim_lanes, claim_order
from jobwire.gateway.providers.sql._rows import record_of
from jobwire.gateway.providers.sql._tables import WAITING_SQL
from jobwire.gateway.providers.sql._wake import Wakeups
from jobwire.gateway.providers.sql._writes import Writes

logger = logging.getLogger("jobwire.gateway.sql")

_RETRY_AWAY = 1.0


def claim_statement(
    sql: Sql, consumer: Consumer, limit: int, now: float, queues: Sequence[str] | None = None
) -> Update:
    """The claim of up to ``limit`` ready jobs for ``consumer`` (of ``queues``, or all its own)."""
    c = sql.jobs.c
    pick = select(c.seq).where(
        c.queue.in_(consumer.queues if queues is None else queues),
        text(WAITING_SQL),
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
    return claimed(sql, consumer, now).where(c.seq == picked.c.seq)


async def claim_ready(
    sql: Sql, flow: Flow, consumer: Consumer, limit: int, now: float
) -> tuple[list[JobRecord], float | None]:
    """Claim up to ``limit`` jobs, in claim order; empty when none is ready.

    Also returns, when a rate held back every job of a queue under flow
    control, the seconds until its next token (else None).
    """
    flowing = await flow.queues()
    plain = [queue for queue in consumer.queues if queue not in flowing]
    records = await _claim_plain(sql, consumer, plain, limit, now) if plain else []
    wait: float | None = None
    for queue in consumer.queues:
        if queue not in flowing or len(records) >= limit:
            continue
        room = limit - len(records)
        # Committed asynchronously (PostgreSQL): a claim a database crash forgets
        # makes its jobs pending again, a redelivery, which at-least-once allows.
        if sql.direct is not None:
            async with sql.direct.lanes() as store:
                rows, until = await claim_lanes(store, consumer, queue, room, now)
        else:
            async with sql.write(async_commit=True) as conn:
                rows, until = await claim_lanes(SqlLanes(sql, conn), consumer, queue, room, now)
        records.extend(record_of(row) for row in rows)
        if until is not None:
            wait = until if wait is None else min(wait, until)
    return records, wait


async def _claim_plain(
    sql: Sql, consumer: Consumer, queues: list[str], limit: int, now: float
) -> list[JobRecord]:
    # Committed asynchronously (PostgreSQL), as the claims of queues under flow control.
    if sql.direct is not None:
        types = sorted(consumer.job_types)
        rows = await sql.direct.claim(queues, types, consumer.worker_id, limit, now)
    else:
        async with sql.write(async_commit=True) as conn:
            statement = claim_statement(sql, consumer, limit, now, queues)
            rows = list((await conn.execute(statement)).mappings())
    # RETURNING keeps no order: put the jobs back in the order they were picked.
    rows.sort(key=claim_order)
    return [record_of(row) for row in rows]


async def next_due(
    sql: Sql, conn: AsyncConnection, consumer: Consumer, flowing: Collection[str], now: float
) -> float | None:
    """When the consumer's earliest waiting job may run, or None when there is none.

    Of the queues under flow control (``flowing``) only jobs not yet due
    count: their due jobs wait for a slot or a token, not for a time.
    """
    c = sql.jobs.c
    query = select(func.min(c.run_at)).where(
        c.queue.in_(consumer.queues),
        text(WAITING_SQL),
        c.queue.not_in(select(sql.tables.paused.c.queue)),
    )
    held = [queue for queue in consumer.queues if queue in flowing]
    if held:
        query = query.where(or_(c.queue.not_in(held), c.run_at > now))
    if consumer.job_types:
        query = query.where(c.type.in_(sorted(consumer.job_types)))
    due = await conn.scalar(query)
    return None if due is None else float(due)


class Claims:
    """This gateway's claims: in turn, parked while nothing is ready, never stranded.

    Args:
        sql: the database.
        flow: the queues under flow control, claimed through their lanes.
        writes: puts back what a stream that left took.
        wakeups: this gateway's wake-ups (its inserts, other gateways' NOTIFYs).
        inflight: runs a claim to its end when its stream leaves meanwhile.
        poll: longest park between two looks at the table, in seconds.
        handover: where parked streams offer to take the jobs inserts store
            (None: they wait for a wake-up and claim).
    """

    def __init__(
        self,
        sql: Sql,
        flow: Flow,
        writes: Writes,
        wakeups: Wakeups,
        inflight: InFlight,
        poll: float,
        handover: Handover | None = None,
    ) -> None:
        self._sql = sql
        self._flow = flow
        self._writes = writes
        self._wakeups = wakeups
        self._inflight = inflight
        self._poll = poll
        self._handover = handover
        # Claims of this gateway's streams take turns, in the order they came:
        # the stream that waited longest is served first, and the gateway's
        # streams never race each other for the same rows.
        self._claiming = asyncio.Lock()
        # (queues, types) -> (generations, until): a stream of that kind found
        # nothing at those generations, and needs no new look before ``until``.
        self._idle: dict[tuple[tuple[str, ...], frozenset[str]], tuple[tuple[int, ...], float]] = {}
        # (queues, types) -> generations: a claim of that kind took fewer jobs
        # than it asked for, so it took every ready one (queues without flow
        # control). The next claim at those generations asks only when the
        # next job is due, once: rows another gateway had locked are due now.
        self._taken_all: dict[tuple[tuple[str, ...], frozenset[str]], tuple[int, ...]] = {}

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
                records = await self._park(consumer, max_jobs, seen, idle[1])
            else:
                try:
                    records, until = await self._look(consumer, max_jobs, kind, seen)
                except UnavailableError as error:
                    # The database is away: the stream stays open and tries again.
                    logger.warning("claim failed (%s); retrying in %gs", error, _RETRY_AWAY)
                    await asyncio.sleep(_RETRY_AWAY)
                    continue
                if not records:
                    if self._wakeups.generation(consumer.queues) == seen:
                        self._idle[kind] = (seen, until)
                    records = await self._park(consumer, max_jobs, seen, until)
            if records:
                return [Claim(record, None) for record in records]

    async def _look(
        self,
        consumer: Consumer,
        max_jobs: int,
        kind: tuple[tuple[str, ...], frozenset[str]],
        seen: tuple[int, ...],
    ) -> tuple[list[JobRecord], float]:
        """Claim what is ready; when nothing is, until when to park instead."""
        records: list[JobRecord] = []
        token: float | None = None
        if self._taken_all.pop(kind, None) != seen:
            records, token = await self._claim(consumer, max_jobs)
        if records:
            if len(records) < max_jobs and self._plain(consumer):
                # It took every ready job: until a wake-up, the next claim of
                # this kind would find none (unless other gateways held some
                # back, which _due() sees).
                self._taken_all[kind] = seen
            return records, math.inf
        due = await self._due(consumer)
        now = time.time()
        until = min(
            now + self._poll,
            math.inf if due is None else due,
            math.inf if token is None else now + token,
        )
        return [], until

    async def _park(
        self, consumer: Consumer, max_jobs: int, seen: tuple[int, ...], until: float
    ) -> list[JobRecord]:
        """Wait for a wake-up; return the jobs an insert handed over meanwhile."""
        handover = self._handover if self._plain(consumer) else None
        if handover is None:
            await self._wakeups.wait(consumer.queues, seen, until - time.time())
            return []
        offer = handover.open(consumer, max_jobs, seen, until)
        try:
            await self._wakeups.wait(consumer.queues, seen, until - time.time(), offer.woken)
            taken = handover.withdraw(offer)
            return [] if taken is None else await asyncio.shield(taken)
        except asyncio.CancelledError:
            # The stream left: jobs an insert wrote for it go back, as a claim's.
            taken = handover.withdraw(offer)
            if taken is not None:
                taken.add_done_callback(self._hand_back)
            raise

    def _hand_back(self, taken: asyncio.Future[list[JobRecord]]) -> None:
        if taken.result():
            self._inflight.spawn(self._give_back(taken.result()))

    def _plain(self, consumer: Consumer) -> bool:
        flowing = self._flow.known()
        return not any(queue in flowing for queue in consumer.queues)

    async def _due(self, consumer: Consumer) -> float | None:
        direct = self._sql.direct
        if direct is not None and self._plain(consumer):
            return await direct.next_due(consumer.queues, sorted(consumer.job_types))
        async with self._sql.read() as conn:
            return await next_due(self._sql, conn, consumer, self._flow.known(), time.time())

    async def _claim(
        self, consumer: Consumer, max_jobs: int
    ) -> tuple[list[JobRecord], float | None]:
        # A stream that goes away during the claim must not strand the jobs
        # taken: the claim finishes, and puts them back.
        task = self._inflight.track(self._claim_in_turn(consumer, max_jobs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._put_back)
            raise

    async def _claim_in_turn(
        self, consumer: Consumer, max_jobs: int
    ) -> tuple[list[JobRecord], float | None]:
        async with self._claiming:
            return await claim_ready(self._sql, self._flow, consumer, max_jobs, time.time())

    def _put_back(self, task: asyncio.Task[tuple[list[JobRecord], float | None]]) -> None:
        if task.cancelled() or task.exception() is not None or not task.result()[0]:
            return
        self._inflight.spawn(self._give_back(task.result()[0]))

    async def _give_back(self, records: list[JobRecord]) -> None:
        await self._writes.put_back(records)
        self._wakeups.notify({record.queue for record in records})
