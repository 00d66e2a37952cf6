"""The statements of a flow-controlled claim on asyncpg (PostgreSQL): fewer round trips.

The same claim as :mod:`._lane_store` (the rules are :mod:`._lanes`'), on a
connection of :class:`~._direct.Direct`'s pool in one transaction: the row's
lock, then its pause, the processing jobs per key and both lane scans in one
statement, each pass's claim in one, the bucket in one; every
statement text prepared once per connection (asyncpg's cache).
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import Any

from jobwire.gateway._limits import NO_LIMITS, QueueLimits
from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.sql._lanes import Locked, lanes_query
from jobwire.gateway.providers.sql._tables import PROCESSING, WAITING_SQL


def claimed_sql(jobs: str, now: str, worker: str, gateway: str) -> str:
    """The UPDATE that makes jobs a worker's, its values at these placeholders."""
    return (
        f"UPDATE {jobs} AS j SET state = {PROCESSING}, attempt = j.attempt + 1, "
        f"worker_id = {worker}, gateway_id = {gateway}, update_time = {now}, schedule_time = NULL"
    )


class LaneStatements:
    """The statement texts of one provider's tables (``jobs``, ``paused``, ``flow``)."""

    def __init__(self, jobs: str, paused: str, flow: str, gateway_id: str) -> None:
        self.jobs = jobs
        self.gateway_id = gateway_id
        self.lock = (
            f"SELECT limits, tokens, refilled, turn, served FROM {flow} WHERE queue = $1 FOR UPDATE"
        )
        # A statement of its own, after the lock: a statement reads as of its
        # start, and the lock may have waited for another gateway's claim.
        self.state = (
            f"SELECT EXISTS (SELECT 1 FROM {paused} WHERE queue = $1) AS paused, "
            f"ARRAY(SELECT concurrency_key FROM {jobs} WHERE queue = $1 "
            f"AND state = {PROCESSING}) AS running"
        )
        self.lanes = lanes_query(jobs, "$1", "$2", "$3", "$4")
        # The same with the lanes after the locked row's turn: one round trip less.
        self.state_and_lanes = f"{self.state}, ARRAY({self.lanes}) AS lanes"
        self.store = (
            f"UPDATE {flow} SET tokens = $2, refilled = $3, turn = $4, served = $5, "
            "update_time = $3 WHERE queue = $1"
        )
        claimed = claimed_sql(jobs, now="$2", worker="$3", gateway="$4")
        self.take = f"{claimed} WHERE j.seq = ANY($1::bigint[]) RETURNING j.*"

    @functools.cache  # noqa: B019  # one instance per provider, a few texts each
    def pick(self, keys: int, typed: bool) -> str:
        """The claim of one pass over ``keys`` lanes.

        Parameters: $1 queue, $2 now, $3 worker, $4 gateway, [$5 types], then
        each lane's key and count.
        """
        base = 5 if typed else 4
        kinds = "AND type = ANY($5::varchar[]) " if typed else ""
        lanes = " UNION ALL ".join(
            f"SELECT seq FROM (SELECT seq FROM {self.jobs} WHERE queue = $1 "
            f"AND concurrency_key = ${base + 1 + 2 * n} AND {WAITING_SQL} AND run_at <= $2 "
            f"{kinds}ORDER BY priority DESC, run_at, seq LIMIT ${base + 2 + 2 * n} "
            f"FOR UPDATE SKIP LOCKED) AS lane{n}"
            for n in range(keys)
        )
        claimed = claimed_sql(self.jobs, now="$2", worker="$3", gateway="$4")
        return (
            f"WITH picked AS ({lanes}) {claimed} FROM picked WHERE j.seq = picked.seq RETURNING j.*"
        )

    @functools.cache  # noqa: B019
    def oldest(self, typed: bool) -> str:
        """The oldest ready jobs of keys not busy: $1 queue, $2 now, $3 busy keys, $4 limit."""
        kinds = "AND type = ANY($5::varchar[]) " if typed else ""
        return (
            f"SELECT seq, concurrency_key FROM {self.jobs} WHERE queue = $1 AND {WAITING_SQL} "
            f"AND run_at <= $2 AND NOT (concurrency_key = ANY($3::varchar[])) {kinds}"
            "ORDER BY priority DESC, run_at, seq LIMIT $4 FOR UPDATE SKIP LOCKED"
        )


class DirectLanes:
    """A claim's statements on an asyncpg connection in a transaction."""

    def __init__(self, conn: Any, statements: LaneStatements) -> None:
        self._conn = conn
        self._sql = statements
        self._lanes: tuple[str, int, list[str]] | None = None
        """The lanes read with the lock: the turn they follow, how many at most, their keys."""

    async def lock(self, queue: str, lanes: int, now: float) -> Locked | None:
        """Lock the queue's row, then read its pause and processing jobs (and its lanes)."""
        row = await self._conn.fetchrow(self._sql.lock, queue)
        if row is None:
            return None
        stored = row["limits"]
        limits = NO_LIMITS if stored is None else QueueLimits.from_json(stored)
        if limits.fifo_across_keys:
            state = await self._conn.fetchrow(self._sql.state, queue)
        else:
            # A claim in turns reads the lanes after the turn: in the same statement.
            state = await self._conn.fetchrow(
                self._sql.state_and_lanes, queue, row["turn"], lanes, now
            )
            self._lanes = (row["turn"], lanes, list(state["lanes"]))
        return Locked(
            limits=limits,
            tokens=row["tokens"],
            refilled=row["refilled"],
            turn=row["turn"],
            served=row["served"],
            paused=state["paused"],
            running=dict(Counter(state["running"])),
        )

    async def lane_keys(self, queue: str, turn: str, most: int, now: float) -> list[str]:
        """The first ``most`` keys with a job due after ``turn``, and around again."""
        if self._lanes is not None and self._lanes[0] == turn and self._lanes[1] >= most:
            return list(self._lanes[2])  # read with the lock, as many or more
        return [row["k"] for row in await self._conn.fetch(self._sql.lanes, queue, turn, most, now)]

    async def pick(
        self, consumer: Consumer, queue: str, wants: dict[str, int], now: float
    ) -> list[Any]:
        """Claim ``wants[key]`` ready jobs of each key in one statement."""
        args = self._claim_args(consumer, queue, now)
        for key, count in wants.items():
            args += [key, count]
        statement = self._sql.pick(len(wants), bool(consumer.job_types))
        return list(await self._conn.fetch(statement, *args))

    async def oldest(
        self, consumer: Consumer, queue: str, busy: list[str], limit: int, now: float
    ) -> list[tuple[int, str]]:
        """The oldest ready jobs of keys not ``busy``, locked."""
        args: list[Any] = [queue, now, busy, limit]
        if consumer.job_types:
            args.append(sorted(consumer.job_types))
        rows = await self._conn.fetch(self._sql.oldest(bool(consumer.job_types)), *args)
        return [(row["seq"], row["concurrency_key"]) for row in rows]

    async def take(self, consumer: Consumer, seqs: list[int], now: float) -> list[Any]:
        """Claim these jobs."""
        args = [seqs, now, consumer.worker_id, self._sql.gateway_id]
        return list(await self._conn.fetch(self._sql.take, *args))

    async def store(self, queue: str, tokens: float, turn: str, served: int, now: float) -> None:
        """Write the bucket's tokens and the rotation's place back."""
        await self._conn.execute(self._sql.store, queue, tokens, now, turn, served)

    def _claim_args(self, consumer: Consumer, queue: str, now: float) -> list[Any]:
        args: list[Any] = [queue, now, consumer.worker_id, self._sql.gateway_id]
        if consumer.job_types:
            args.append(sorted(consumer.job_types))
        return args
