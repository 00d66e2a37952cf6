"""Claims of a queue under flow control: what its limits admit, its keys in turn.

One transaction per queue (:func:`claim_lanes`), after the queue's
``queue_flow`` row is locked (:mod:`._flow`):

1. **Budget**: the queue's room is its ``max_concurrency`` less the jobs
   processing, and the whole tokens of its rate's bucket.
2. **Lanes**: the keys with waiting jobs, in key order after the key served
   last and around again (a loose index scan of ``<prefix>jobs_lanes``: one
   index probe per key, never a scan of a key's backlog; jobs without a key
   are the lane ``""``). At most :data:`MAX_LANES` keys per claim.
3. **Turns**: each lane whose key has a free slot gets ``weight`` jobs per
   round (1 by default) until the room is used; the jobs of all lanes are
   then claimed in one statement (a ``UNION ALL`` of one small ``LIMIT``
   per key, ``FOR UPDATE SKIP LOCKED``), in priority and age order within a
   key. A lane that had fewer jobs due than its share leaves the rest to the
   others (at most :data:`_PASSES` statements).
4. The bucket's tokens left and the key served last are written back.

With ``fifo_across_keys`` the oldest ready jobs go first, skipping keys at
their limit (among the oldest ``4 * room`` ready jobs).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Update, func, select, text, union_all, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._limits import QueueLimits
from jobwire.gateway.providers._flow import budget
from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._flow import (
    limits_of,
    processing,
    store_bucket,
    token_wait,
    tokens_at,
    whole,
)
from jobwire.gateway.providers.sql._tables import PROCESSING, WAITING

MAX_LANES = 1000
"""Most keys one claim looks at (a queue with more takes them over several claims)."""
_PASSES = 3
_WAITING = f"state IN ({', '.join(str(s) for s in WAITING)})"

Visit = tuple[str, int]
"""A lane's turn in a claim: its key and how many jobs it gets."""


def _lanes_query(jobs: str, first: str, until: str) -> str:
    # The loose index scan (an ORDER BY … LIMIT 1 per key) of PostgreSQL's wiki,
    # which SQLite runs as well.
    def next_key(bound: str) -> str:
        return (
            f"(SELECT concurrency_key FROM {jobs} WHERE queue = :queue AND {_WAITING} "
            f"AND concurrency_key {bound} {until} ORDER BY concurrency_key LIMIT 1)"
        )

    return (
        f"WITH RECURSIVE lanes(k, n) AS (SELECT {next_key(first)}, 1 "
        f"UNION ALL SELECT {next_key('> lanes.k')}, lanes.n + 1 FROM lanes "
        "WHERE lanes.k IS NOT NULL AND lanes.n < :most) SELECT k FROM lanes WHERE k IS NOT NULL"
    )


async def lane_keys(sql: Sql, conn: AsyncConnection, queue: str, turn: str) -> list[str]:
    """The keys with waiting jobs, starting after ``turn`` and around again."""
    jobs = sql.jobs.name
    after = list(
        await conn.scalars(
            text(_lanes_query(jobs, "> :turn", "")),
            {"queue": queue, "turn": turn, "most": MAX_LANES},
        )
    )
    if len(after) >= MAX_LANES:
        return after
    around = await conn.scalars(
        text(_lanes_query(jobs, ">= ''", "AND concurrency_key <= :turn")),
        {"queue": queue, "turn": turn, "most": MAX_LANES - len(after)},
    )
    return after + list(around)


def allocate(
    keys: Sequence[str],
    left: dict[str, int],
    weight: Callable[[str], int],
    room: int,
    first: dict[str, int] | None = None,
) -> list[Visit]:
    """Round-robin turns over ``keys``: ``weight`` jobs a round, within ``left`` and ``room``.

    ``first`` gives a key what is left of a turn an earlier claim began.
    """
    given: Counter[str] = Counter()
    visits: list[Visit] = []
    active = [key for key in keys if left[key] > 0]
    total = 0
    rest = dict(first or {})
    while active and total < room:
        still = []
        for key in active:
            turn = rest.pop(key, None) or weight(key)
            n = min(turn, left[key] - given[key], room - total)
            if n <= 0:
                break
            given[key] += n
            total += n
            visits.append((key, n))
            if given[key] < left[key]:
                still.append(key)
        active = still
    return visits


def pick_statement(
    sql: Sql, consumer: Consumer, queue: str, wants: dict[str, int], now: float
) -> Update:
    """Claim ``wants[key]`` ready jobs of each key of ``queue`` in one statement."""
    c = sql.jobs.c
    parts: list[Any] = []
    for n, (key, count) in enumerate(wants.items()):
        lane = select(c.seq).where(
            c.queue == queue, c.concurrency_key == key, text(_WAITING), c.run_at <= now
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
    return _claimed(sql, consumer, now).where(c.seq.in_(select(picked.c.seq)))


def _claimed(sql: Sql, consumer: Consumer, now: float) -> Update:
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


async def claim_lanes(
    sql: Sql, conn: AsyncConnection, consumer: Consumer, queue: str, limit: int, now: float
) -> tuple[list[Any], float | None]:
    """Claim up to ``limit`` jobs of ``queue`` as its limits and turns allow.

    Returns the rows in delivery order, and when nothing could be taken
    because of the rate, the seconds until its next token (else None).
    """
    flow = sql.tables.flow
    query = select(flow).where(flow.c.queue == queue).with_for_update()
    row = (await conn.execute(query)).mappings().first()
    paused = sql.tables.paused
    if row is None or await conn.scalar(
        select(func.count()).select_from(paused).where(paused.c.queue == queue)
    ):
        return [], None
    # Another gateway's claim may have held the row meanwhile: the bucket counts from now.
    now = max(now, time.time())
    limits = limits_of(row)
    running = await processing(sql, conn, queue)
    tokens = None if limits.rate is None else tokens_at(limits.rate, row, now)
    room = min(
        limit, budget(limits, sum(running.values()), None if tokens is None else whole(tokens))
    )
    if room <= 0:
        if limits.rate is not None and tokens is not None and whole(tokens) == 0:
            return [], token_wait(limits.rate, tokens)
        return [], None
    turn: str = row["turn"]
    served: int = row["served"]
    if limits.fifo_across_keys:
        rows = await _oldest(sql, conn, consumer, queue, limits, running, int(room), now)
    else:
        rotation = Rotation(turn, served, limits, running, int(room))
        rows = await rotation.claim(sql, conn, consumer, queue, now)
        turn, served = rotation.turn, rotation.served
    if rows or tokens is not None:
        left = 0.0 if tokens is None else tokens - len(rows)
        await conn.execute(store_bucket(sql, queue, left, turn, served, now))
    return rows, None


class Rotation:
    """One claim's turns over a queue's lanes, going on from where the last claim stopped.

    Args:
        turn: the key served last.
        served: the jobs it got in its turn so far (a turn is ``weight`` jobs).
        limits: the queue's limits.
        running: the queue's jobs processing, per key.
        room: the most jobs to claim.
    """

    def __init__(
        self, turn: str, served: int, limits: QueueLimits, running: dict[str, int], room: int
    ) -> None:
        self.turn = turn
        self.served = served
        self._limits = limits
        self._running = running
        self._room = room

    async def claim(
        self, sql: Sql, conn: AsyncConnection, consumer: Consumer, queue: str, now: float
    ) -> list[Any]:
        """Claim the jobs of the lanes' turns; ``turn`` and ``served`` are then this claim's."""
        limits, room = self._limits, self._room
        keys = await lane_keys(sql, conn, queue, self.turn)
        per_key = limits.max_concurrency_per_key
        left = {k: per_key - self._running.get(k, 0) if k and per_key else room for k in keys}
        first: dict[str, int] = {}
        if self.turn in keys and self.served < limits.weight(self.turn):
            # The key served last has not had its whole turn: it goes on first.
            keys.remove(self.turn)
            keys.insert(0, self.turn)
            first[self.turn] = limits.weight(self.turn) - self.served
        rows: list[Any] = []
        visits: list[Visit] = []
        for _ in range(_PASSES):
            planned = allocate(keys, left, limits.weight, room - len(rows), first)
            if not planned:
                break
            wants: dict[str, int] = Counter()
            for key, n in planned:
                wants[key] += n
            statement = pick_statement(sql, consumer, queue, wants, now)
            got = list((await conn.execute(statement)).mappings())
            counted = Counter(r["concurrency_key"] for r in got)
            for key, n in wants.items():
                left[key] = 0 if counted[key] < n else left[key] - n  # short: none more due
            rows.extend(got)
            took = [(key, n) for key, n in planned if counted[key]]
            if took:
                key, n = took[-1]
                going_on = not visits and len(took) == 1 and key in first
                self.turn, self.served = key, n + (self.served if going_on else 0)
            visits.extend(took)
            first = {}
            if all(counted[key] >= n for key, n in wants.items()) or len(rows) >= room:
                break
        return in_turns(rows, visits)


def in_turns(rows: list[Any], visits: list[Visit]) -> list[Any]:
    """The claimed rows in delivery order: lane by lane as the turns went."""
    lanes: dict[str, deque[Any]] = defaultdict(deque)
    for row in sorted(rows, key=lambda r: (-r["priority"], r["run_at"], r["seq"])):
        lanes[row["concurrency_key"]].append(row)
    ordered = []
    for key, n in visits:
        lane = lanes[key]
        for _ in range(min(n, len(lane))):
            ordered.append(lane.popleft())
    for lane in lanes.values():
        ordered.extend(lane)
    return ordered


async def _oldest(
    sql: Sql,
    conn: AsyncConnection,
    consumer: Consumer,
    queue: str,
    limits: QueueLimits,
    running: dict[str, int],
    room: int,
    now: float,
) -> list[Any]:
    """Fair dispatch off: the oldest ready jobs of keys with a free slot."""
    c = sql.jobs.c
    per_key = limits.max_concurrency_per_key
    query = select(c.seq, c.concurrency_key).where(c.queue == queue, text(_WAITING))
    query = query.where(c.run_at <= now)
    if consumer.job_types:
        query = query.where(c.type.in_(sorted(consumer.job_types)))
    busy = [key for key, n in running.items() if key and per_key and n >= per_key]
    if busy:
        query = query.where(c.concurrency_key.not_in(busy))
    query = (
        query.order_by(c.priority.desc(), c.run_at, c.seq)
        .limit(min(4 * room, MAX_LANES))
        .with_for_update(skip_locked=True)
    )
    counts = Counter(running)
    chosen: list[int] = []
    for seq, key in await conn.execute(query):
        if len(chosen) >= room:
            break
        if key and per_key and counts[key] >= per_key:
            continue
        counts[key] += 1
        chosen.append(seq)
    if not chosen:
        return []
    claimed = _claimed(sql, consumer, now).where(c.seq.in_(chosen))
    rows = list((await conn.execute(claimed)).mappings())
    rows.sort(key=lambda r: (-r["priority"], r["run_at"], r["seq"]))
    return rows
