"""PostgreSQL's hot statements on asyncpg's own pool: one round trip each.

A claim and a frame's completions are each one statement, atomic on their
own. Run through SQLAlchemy each cost four round trips (the pool's ping on
checkout, ``BEGIN``, the statement, ``COMMIT``) and as much Python again; run
here, on a connection of asyncpg's pool in autocommit, they cost one: the
statement is its own transaction, prepared once per connection (asyncpg's
statement cache). Its sessions have ``synchronous_commit`` off: a claim or
a completion a database crash forgets is a redelivery, which at-least-once
allows. Enqueues, which must be durable before they are answered, stay on
the SQLAlchemy engine.

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

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway.providers.sql._tables import PROCESSING, WAITING
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


def _claim_statement(jobs: str, paused: str, *, typed: bool) -> str:
    waiting = ", ".join(str(s) for s in WAITING)
    kinds = "AND type = ANY($6::varchar[]) " if typed else ""
    # The waiting-state test is literal: the predicate of the partial index
    # <prefix>jobs_ready, which the generic plan of a prepared statement uses.
    return (
        f"WITH picked AS (SELECT seq FROM {jobs} WHERE queue = ANY($1::varchar[]) "
        f"AND state IN ({waiting}) AND run_at <= $2 "
        f"AND queue NOT IN (SELECT queue FROM {paused}) {kinds}"
        "ORDER BY priority DESC, run_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED) "
        f"UPDATE {jobs} AS j SET state = {PROCESSING}, attempt = j.attempt + 1, "
        "worker_id = $4, gateway_id = $5, update_time = $2, schedule_time = NULL "
        "FROM picked WHERE j.seq = picked.seq RETURNING j.*"
    )


async def _json_codec(conn: Any) -> None:
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Direct:
    """Claims and completions on an asyncpg pool of ``size`` connections.

    Args:
        url: the provider's SQLAlchemy URL (``postgresql+asyncpg://…``).
        size: most connections.
        jobs: the jobs table's name.
        paused: the paused queues table's name.
        gateway_id: this gateway's id (claims name it).
    """

    def __init__(self, url: str, size: int, jobs: str, paused: str, gateway_id: str) -> None:
        self._dsn = make_url(url).set(drivername="postgresql").render_as_string(False)
        self._size = size
        self._gateway_id = gateway_id
        self._claim = _claim_statement(jobs, paused, typed=False)
        self._claim_typed = _claim_statement(jobs, paused, typed=True)
        arrays = ", ".join(
            f"${n}::{kind}[]" for n, kind in enumerate(ENDING_COLUMNS.values(), start=1)
        )
        self._endings = endings_statement(jobs, arrays)
        self._pool: Any = None

    async def open(self) -> None:
        """Open the pool (one connection now, more as needed)."""
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._size,
                init=_json_codec,
                server_settings={"synchronous_commit": "off"},
            )
        except _AWAY as error:
            raise UnavailableError(f"queue database unavailable: {error}") from error

    async def close(self) -> None:
        """Close the pool."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(*_AWAY):
                await pool.close()

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        try:
            async with self._pool.acquire() as conn:
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

    async def end(self, rows: Sequence[dict[str, Any]]) -> set[str]:
        """Write endings that make no job ready (no ``NOTIFY``); return the ids written."""
        arrays = [[row[name] for row in rows] for name in ENDING_COLUMNS]
        async with self._connection() as conn:
            return {record["id"] for record in await conn.fetch(self._endings, *arrays)}
