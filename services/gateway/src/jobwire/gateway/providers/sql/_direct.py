"""PostgreSQL's hot statements on asyncpg's own pools: one round trip each.

An enqueue without deduplication keys, a claim and a frame's completions
are each one statement, atomic on its own. Run through SQLAlchemy each
costs four or five round trips (the pool's ping on checkout, ``BEGIN``, the
statements, ``COMMIT``) and as much Python again; run here, on a
connection of asyncpg's pool in autocommit, one: the statement is its own
transaction, prepared once per connection (asyncpg's
statement cache). Two pools: enqueues go through one whose commits are
synchronous (an enqueue is answered after its commit), claims and
completions through one with ``synchronous_commit`` off (a claim or a
completion a database crash forgets is a redelivery, which at-least-once
allows). An enqueue with deduplication keys, or one that collided on a
request id, takes the engine's transaction that looks them up.

asyncpg's pool replaces a connection the server dropped when it is next
acquired; a statement that fails with it is ``UNAVAILABLE`` (the callers
try again: :meth:`Sql.outlast`, the claim loop).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._models import MAX_PRIORITY, JobState
from jobwire.gateway.providers.sql._direct_lanes import DirectLanes, LaneStatements, claimed_sql
from jobwire.gateway.providers.sql._tables import PROCESSING, WAITING_SQL
from jobwire.gateway.providers.sql._writes import ENDING_COLUMNS, endings_statement

# InternalClientError: a connection the server dropped in the middle of a
# statement may be found in a state that refuses the next one.
_AWAY = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


# The columns of a new job and their PostgreSQL types (for unnest), in
# ``insert_row``'s order.
_JOB_COLUMNS = {
    "id": "varchar",
    "queue": "varchar",
    "type": "varchar",
    "priority": "smallint",
    "state": "smallint",
    "run_at": "float8",
    "payload": "bytea",
    "content_type": "varchar",
    "attributes": "json",
    "max_retries": "integer",
    "timeout": "float8",
    "deduplication_key": "varchar",
    "request_id": "varchar",
    "schedule": "varchar",
    "attempt": "integer",
    "create_time": "float8",
    "update_time": "float8",
    "schedule_time": "float8",
    "end_time": "float8",
    "worker_id": "varchar",
    "gateway_id": "varchar",
    "last_error": "json",
    "result": "bytea",
    "result_content_type": "varchar",
    "progress": "bytea",
    "concurrency_key": "varchar",
}


def _insert_statement(jobs: str, paused: str) -> str:
    # Rows handed to a parked stream (._handover) come leased; on a paused
    # queue they are stored waiting instead. The NOTIFY, when there is one,
    # is sent when the statement's own transaction commits.
    n = len(_JOB_COLUMNS)
    names = ", ".join(_JOB_COLUMNS)
    arrays = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(_JOB_COLUMNS.values(), start=1))
    waiting = {
        "state": JobState.PENDING.value,
        "attempt": 0,
        "worker_id": "''",
        "gateway_id": "NULL",
    }
    columns = ", ".join(
        f"CASE WHEN held THEN {waiting[name]} ELSE {name} END" if name in waiting else name
        for name in _JOB_COLUMNS
    )
    return (
        f"WITH new AS (SELECT *, state = {PROCESSING} AND queue IN (SELECT queue FROM {paused}) "
        f"AS held FROM unnest({arrays}) AS u({names})), "
        f"stored AS (INSERT INTO {jobs} ({names}) SELECT {columns} FROM new "
        "RETURNING id, state), "
        f"told AS (SELECT pg_notify(${n + 1}, ${n + 2}) WHERE ${n + 2}::text IS NOT NULL) "
        f"SELECT ARRAY(SELECT id FROM stored WHERE state = {PROCESSING}) AS handed, "
        "(SELECT count(*) FROM told) AS told"
    )


def _claim_statement(jobs: str, paused: str, *, typed: bool) -> str:
    kinds = "AND type = ANY($6::varchar[]) " if typed else ""
    # One ordered read of <prefix>jobs_ready per queue (see ._claim): with
    # ``queue = ANY(…)`` in one read, PostgreSQL sorted every waiting job of
    # the queues at each claim (7 ms a claim at 10,000 waiting), so a drain
    # of N jobs cost O(N²). The rows the outer limit drops are unlocked at
    # the statement's end.
    return (
        "WITH picked AS (SELECT p.seq FROM unnest($1::varchar[]) AS q(name), "
        f"LATERAL (SELECT seq, priority, run_at FROM {jobs} WHERE queue = q.name "
        f"AND {WAITING_SQL} AND run_at <= $2 {kinds}"
        "ORDER BY priority DESC, run_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED) AS p "
        f"WHERE q.name NOT IN (SELECT queue FROM {paused}) "
        "ORDER BY p.priority DESC, p.run_at, p.seq LIMIT $3) "
        f"{claimed_sql(jobs, now='$2', worker='$4', gateway='$5')} "
        "FROM picked WHERE j.seq = picked.seq RETURNING j.*"
    )


def _next_due_statement(jobs: str, paused: str, *, typed: bool) -> str:
    kinds = "AND type = ANY($2::varchar[]) " if typed else ""
    # The earliest run_at of each (queue, priority) is the first entry of
    # <prefix>jobs_ready at that prefix: ten index reads a queue, whatever
    # the backlog (a min over the queue would read every waiting job).
    return (
        "SELECT min(d.run_at) FROM unnest($1::varchar[]) AS q(name) "
        f"CROSS JOIN generate_series(0, {MAX_PRIORITY}) AS p(priority), "
        f"LATERAL (SELECT run_at FROM {jobs} WHERE queue = q.name AND priority = p.priority "
        f"AND {WAITING_SQL} {kinds}ORDER BY run_at LIMIT 1) AS d "
        f"WHERE q.name NOT IN (SELECT queue FROM {paused})"
    )


async def _as_it_is(_conn: Any) -> None:
    # asyncpg resets a connection returned to its pool (advisory locks, LISTEN,
    # settings: a round trip each time). These statements leave nothing to reset.
    return


async def _json_codec(conn: Any) -> None:
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Direct:
    """Claims and completions on an asyncpg pool of ``size`` connections.

    Args:
        url: the provider's SQLAlchemy URL (``postgresql+asyncpg://…``).
        size: most connections.
        jobs: the jobs table's name.
        paused: the paused queues table's name.
        flow: the flow control table's name.
        gateway_id: this gateway's id (claims name it).
    """

    def __init__(
        self, url: str, size: int, jobs: str, paused: str, flow: str, gateway_id: str
    ) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._size = size
        self._gateway_id = gateway_id
        self._claim = _claim_statement(jobs, paused, typed=False)
        self._claim_typed = _claim_statement(jobs, paused, typed=True)
        self._next_due = _next_due_statement(jobs, paused, typed=False)
        self._next_due_typed = _next_due_statement(jobs, paused, typed=True)
        arrays = ", ".join(
            f"${n}::{kind}[]" for n, kind in enumerate(ENDING_COLUMNS.values(), start=1)
        )
        self._endings = endings_statement(jobs, arrays)
        n = len(ENDING_COLUMNS)
        # The endings that free slots of flow control tell every gateway, at commit.
        self._endings_told = (
            f"WITH ended AS ({self._endings}), told AS (SELECT pg_notify(${n + 1}, ${n + 2})) "
            "SELECT ended.id FROM ended, told"
        )
        self._lanes = LaneStatements(jobs, paused, flow, gateway_id)
        self._insert = _insert_statement(jobs, paused)
        self._get = f"SELECT * FROM {jobs} WHERE id = $1"
        self._pool: Any = None
        self._durable: Any = None

    async def open(self) -> None:
        """Open the pools (one connection each now, more as needed)."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._size,
                init=_json_codec,
                reset=_as_it_is,
                server_settings={"synchronous_commit": "off"},
            )
            # Enqueues: committed as the server commits (synchronous_commit as set there).
            self._durable = await asyncpg.create_pool(
                self._dsn, min_size=1, max_size=self._size, init=_json_codec, reset=_as_it_is
            )
        except _AWAY as error:
            await self.close()
            raise UnavailableError(f"queue database unavailable: {error}") from error

    async def close(self) -> None:
        """Close the pools."""
        for pool in (self._pool, self._durable):
            if pool is not None:
                with contextlib.suppress(*_AWAY):
                    await pool.close()
        self._pool = self._durable = None

    @contextlib.asynccontextmanager
    async def _connection(self, durable: bool = False) -> AsyncIterator[Any]:
        try:
            async with (self._durable if durable else self._pool).acquire() as conn:
                try:
                    yield conn
                except asyncpg.exceptions.InternalClientError:
                    conn.terminate()  # not to be used again: the pool opens another
                    raise
        except _AWAY as error:
            message = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            raise UnavailableError(f"queue database unavailable: {message}") from error

    async def claim(
        self,
        queues: Sequence[str],
        job_types: Sequence[str],
        worker_id: str,
        limit: int,
        now: float,
    ) -> list[Any]:
        """Claim up to ``limit`` ready jobs; their rows, unordered."""
        args: list[Any] = [list(queues), now, limit, worker_id, self._gateway_id]
        statement = self._claim
        if job_types:
            statement = self._claim_typed
            args.append(list(job_types))
        async with self._connection() as conn:
            return list(await conn.fetch(statement, *args))

    async def get(self, job_id: str) -> Any:
        """The row of one job, or None."""
        async with self._connection() as conn:
            return await conn.fetchrow(self._get, job_id)

    async def next_due(self, queues: Sequence[str], job_types: Sequence[str]) -> float | None:
        """The earliest ``run_at`` of the waiting jobs of ``queues`` (ready ones included)."""
        statement, args = self._next_due, [list(queues)]
        if job_types:
            statement = self._next_due_typed
            args.append(list(job_types))
        async with self._connection() as conn:
            due = await conn.fetchval(statement, *args)
        return None if due is None else float(due)

    async def insert(
        self, rows: Sequence[dict[str, Any]], channel: str, payload: str | None
    ) -> set[str]:
        """Store new jobs' rows and notify ``channel``, in one statement; the ids stored leased.

        Answered after the commit. ``payload`` None: no notification.

        Raises:
            IntegrityError: a unique index refused a row (a request id or a
                key another enqueue stored meanwhile).
        """
        arrays = [[row[name] for row in rows] for name in _JOB_COLUMNS]
        async with self._connection(durable=True) as conn:
            try:
                handed = await conn.fetchval(self._insert, *arrays, channel, payload)
            except asyncpg.UniqueViolationError as error:
                raise IntegrityError(self._insert, None, error) from error
        return set(handed)

    async def end(
        self, rows: Sequence[dict[str, Any]], notify: tuple[str, str] | None = None
    ) -> set[str]:
        """Write endings that make no job ready; return the ids written.

        ``notify`` (channel, payload): sent at commit when an ending was written.
        """
        arrays: list[Any] = [[row[name] for row in rows] for name in ENDING_COLUMNS]
        statement = self._endings
        if notify is not None:
            statement = self._endings_told
            arrays += notify
        async with self._connection() as conn:
            return {record["id"] for record in await conn.fetch(statement, *arrays)}

    @contextlib.asynccontextmanager
    async def lanes(self) -> AsyncIterator[DirectLanes]:
        """A flow-controlled claim's statements, in one transaction (committed asynchronously)."""
        async with self._connection() as conn, conn.transaction():
            yield DirectLanes(conn, self._lanes)
