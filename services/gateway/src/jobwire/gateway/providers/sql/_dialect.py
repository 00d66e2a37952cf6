"""What differs between PostgreSQL and SQLite, behind one connection helper.

* **PostgreSQL**: many gateways write at once; claims lock rows with
  ``FOR UPDATE SKIP LOCKED``; a transaction that made jobs ready sends one
  ``NOTIFY``; a transaction that only records ended leases commits
  asynchronously (``synchronous_commit = off``: a lost ack is a redelivery).
* **SQLite**: one gateway per file, held by an exclusive lock on
  ``<file>.lock`` for the process's life (the kernel drops it when the
  process dies, however it dies); the gateway's writes take turns on an
  ``asyncio.Lock``, so SQLite never sees two writers (WAL lets reads proceed).
  Claims and ended leases commit with ``synchronous = NORMAL`` (not synced to
  disk at commit: a crash of the process loses none of them, a crash of the
  machine may lose the last, which is a redelivery); enqueues with ``FULL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobwire.gateway._db import transaction
from jobwire.gateway._errors import UnavailableError
from jobwire.gateway.providers.sql._tables import Tables

if TYPE_CHECKING:  # asyncpg is there only with the postgres extra
    from jobwire.gateway.providers.sql._direct import Direct

logger = logging.getLogger("jobwire.gateway.sql")

T = TypeVar("T")

PAYLOAD_LIMIT = 7000
"""Longest NOTIFY payload sent (PostgreSQL refuses 8,000 bytes)."""
WRITE_PATIENCE = 10.0
"""Seconds :meth:`Sql.outlast` tries a write again while the database is away."""
_PAUSES = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class FileInUseError(RuntimeError):
    """Another gateway serves the SQLite file."""


class Sql:
    """The engine, the tables and the dialect's ways, shared by the provider's parts.

    Args:
        engine: the database.
        async_engine: the same database, on connections whose commits do not sync.
        tables: the provider's tables.
        gateway_id: this gateway's id in ``<prefix>gateways`` and in leased rows.
        channel_prefix: prefix of the NOTIFY channels (the table prefix).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        async_engine: AsyncEngine,
        tables: Tables,
        gateway_id: str,
        channel_prefix: str,
        direct: Direct | None = None,
    ) -> None:
        self.engine = engine
        self.direct = direct
        """PostgreSQL: claims and completions, one statement and one round trip each."""
        self.async_engine = async_engine
        """Connections whose commits return before they are on disk: for what may be lost."""
        self.tables = tables
        self.jobs = tables.jobs
        self.gateway_id = gateway_id
        self.postgres = engine.dialect.name == "postgresql"
        self.ready_channel = f"{channel_prefix}ready"
        self.cancel_channel = f"{channel_prefix}cancel"
        self._writer = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, for reads."""
        async with transaction(self.engine, "queue") as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def write(self, *, async_commit: bool = False) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction; ``async_commit`` for what may be lost."""
        # async_engine's connections are set up not to sync: no setting per transaction.
        engine = self.async_engine if async_commit else self.engine
        if self.postgres:
            async with transaction(engine, "queue") as conn:
                yield conn
            return
        async with self._writer, transaction(engine, "queue") as conn:
            yield conn

    async def outlast(self, step: Callable[[], Awaitable[T]], what: str) -> T:
        """Run ``step`` (one idempotent transaction) again while the database is away.

        A terminated backend or a restart fails a transaction; the worker's
        stream should not fail with it. Gives up (``UnavailableError``) after
        :data:`WRITE_PATIENCE` seconds.
        """
        deadline = time.monotonic() + WRITE_PATIENCE
        attempt = 0
        while True:
            try:
                return await step()
            except UnavailableError as error:
                pause = _PAUSES[min(attempt, len(_PAUSES) - 1)]
                if time.monotonic() + pause > deadline:
                    raise
                logger.warning("%s failed (%s); trying again in %gs", what, error, pause)
                attempt += 1
                await asyncio.sleep(pause)

    def ready_payload(self, queues: set[str]) -> str:
        """The payload of the ready ``NOTIFY`` for ``queues`` (``*``: too many to name)."""
        names = ",".join(sorted(queues))
        if len(names) > PAYLOAD_LIMIT:
            names = "*"
        return f"{self.gateway_id}|{names}"

    async def notify_ready(self, conn: AsyncConnection, queues: set[str]) -> None:
        """Tell the other gateways, at commit, that ``queues`` have jobs (PostgreSQL)."""
        if not self.postgres or not queues:
            return
        await conn.execute(select(func.pg_notify(self.ready_channel, self.ready_payload(queues))))

    async def notify_cancel(
        self, conn: AsyncConnection, gateway_id: str, job_id: str, message: str
    ) -> None:
        """Tell gateway ``gateway_id``, at commit, that its leased job was cancelled."""
        if self.postgres:
            payload = f"{gateway_id}|{job_id}|{message}"[:PAYLOAD_LIMIT]
            await conn.execute(select(func.pg_notify(self.cancel_channel, payload)))


def lock_sqlite_file(url: str) -> IO[bytes] | None:
    """Take the one-gateway lock of a SQLite database file; None for other databases.

    Raises:
        FileInUseError: another running gateway holds it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    path = Path(parsed.database).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(f"{path}.lock", "a+b")  # noqa: SIM115  # held until aclose
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().decode(errors="replace").strip() or "another process"
        handle.close()
        raise FileInUseError(
            f"the SQLite queue file {path} is in use by another gateway ({holder}); "
            "a SQLite queue serves one gateway: stop the other one, or use "
            '[provider] type = "postgres" for several gateways'
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}".encode())
    handle.flush()
    return handle
