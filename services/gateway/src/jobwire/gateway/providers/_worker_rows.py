"""Worker streams shared as rows of one table, for the providers that keep a SQL database.

The PostgreSQL provider's ``<prefix>workers`` and the SQS provider's
``jobwire_sqs_workers`` hold the same columns. Each gateway replaces its rows
every ``WORKER_SHARE_INTERVAL`` seconds with the streams open on it;
``ListWorkers`` on any gateway reads the other gateways' fresh rows, and
``DrainWorker`` marks rows that their gateway picks up at its next
publication. A gateway that stops publishing drops out of the listing after
``WORKER_FRESHNESS``; its rows are deleted a while later by whichever gateway
publishes next.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway.providers._types import WORKER_FRESHNESS, WorkerInfo

STALE = 6 * WORKER_FRESHNESS
"""Seconds after which a silent gateway's rows are deleted (not only hidden)."""


def _seconds(now: float) -> Any:
    return now


class WorkerRows:
    """A :class:`~jobwire.gateway.providers.base.WorkerBoard` on one table.

    Args:
        table: its columns ``session_id``, ``gateway``, ``worker_id``,
            ``info`` (JSON), ``seen_time`` and ``drain``.
        transaction: opens a connection in a transaction on the table's database.
        stamp: a time (epoch seconds) as ``seen_time`` holds it.
    """

    def __init__(
        self,
        table: Table,
        transaction: Callable[[], AbstractAsyncContextManager[AsyncConnection]],
        stamp: Callable[[float], Any] = _seconds,
    ) -> None:
        self._table = table
        self._transaction = transaction
        self._stamp = stamp

    async def publish(self, gateway: str, workers: Sequence[WorkerInfo]) -> set[str]:
        """Replace ``gateway``'s rows with ``workers``; return the sessions asked to drain."""
        t = self._table
        now = time.time()
        async with self._transaction() as conn:
            asked = set(
                await conn.scalars(select(t.c.session_id).where(t.c.gateway == gateway, t.c.drain))
            )
            await conn.execute(
                delete(t).where(
                    (t.c.gateway == gateway) | (t.c.seen_time < self._stamp(now - STALE))
                )
            )
            if workers:
                seen = self._stamp(now)
                await conn.execute(
                    insert(t),
                    [
                        {
                            "session_id": w.session_id,
                            "gateway": gateway,
                            "worker_id": w.worker_id,
                            "info": w.as_json(),
                            "seen_time": seen,
                            "drain": w.session_id in asked,
                        }
                        for w in workers
                    ],
                )
        return asked

    async def others(self, gateway: str) -> list[WorkerInfo]:
        """The streams other gateways published within ``WORKER_FRESHNESS``."""
        t = self._table
        query = select(t.c.info, t.c.drain).where(
            t.c.gateway != gateway, t.c.seen_time >= self._fresh()
        )
        async with self._transaction() as conn:
            return [WorkerInfo.from_json(info, drain) for info, drain in await conn.execute(query)]

    async def request_drain(self, gateway: str, worker_id: str, session_id: str) -> int:
        """Mark other gateways' fresh streams of ``worker_id`` as asked to drain."""
        t = self._table
        query = update(t).where(
            t.c.worker_id == worker_id, t.c.gateway != gateway, t.c.seen_time >= self._fresh()
        )
        if session_id:
            query = query.where(t.c.session_id == session_id)
        async with self._transaction() as conn:
            result = await conn.execute(query.values(drain=True))
        return int(result.rowcount)

    def _fresh(self) -> Any:
        return self._stamp(time.time() - WORKER_FRESHNESS)
