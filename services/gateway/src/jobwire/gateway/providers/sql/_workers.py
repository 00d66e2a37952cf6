"""Worker streams shared between the gateways of one database (``<prefix>workers``).

Each gateway replaces its rows every few seconds (``share_workers``) with the
streams open on it; ``ListWorkers`` on any gateway reads the other gateways'
fresh rows, and ``DrainWorker`` marks rows that their gateway picks up at its
next publication. A gateway that stops publishing drops out of the listing
after ``WORKER_FRESHNESS``; its rows are deleted a while later by whichever
gateway publishes next. A SQLite file serves one gateway: nothing to share.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, select, update

from jobwire.gateway.providers._types import WORKER_FRESHNESS, WorkerInfo
from jobwire.gateway.providers.sql._dialect import Sql

# Rows nobody refreshed for this long belong to a gateway that is gone.
_STALE = 6 * WORKER_FRESHNESS


class SharedWorkers:
    """The ``<prefix>workers`` table."""

    def __init__(self, sql: Sql) -> None:
        self._sql = sql
        self._table = sql.tables.workers
        self._shared = sql.postgres

    async def publish(self, gateway: str, workers: Sequence[WorkerInfo]) -> set[str]:
        """Replace ``gateway``'s rows with ``workers``; return the sessions asked to drain."""
        if not self._shared:
            return set()
        t = self._table
        now = time.time()
        async with self._sql.write() as conn:
            asked = set(
                await conn.scalars(select(t.c.session_id).where(t.c.gateway == gateway, t.c.drain))
            )
            await conn.execute(
                delete(t).where((t.c.gateway == gateway) | (t.c.seen_time < now - _STALE))
            )
            if workers:
                await conn.execute(
                    insert(t),
                    [
                        {
                            "session_id": w.session_id,
                            "gateway": gateway,
                            "worker_id": w.worker_id,
                            "info": dataclasses.asdict(w),
                            "seen_time": now,
                            "drain": w.session_id in asked,
                        }
                        for w in workers
                    ],
                )
        return asked

    async def others(self, gateway: str) -> list[WorkerInfo]:
        """The streams other gateways published within ``WORKER_FRESHNESS``."""
        if not self._shared:
            return []
        t = self._table
        query = select(t.c.info, t.c.drain).where(
            t.c.gateway != gateway, t.c.seen_time >= time.time() - WORKER_FRESHNESS
        )
        async with self._sql.read() as conn:
            return [_worker(info, drain) for info, drain in await conn.execute(query)]

    async def request_drain(self, gateway: str, worker_id: str, session_id: str) -> int:
        """Mark other gateways' fresh streams of ``worker_id`` as asked to drain."""
        if not self._shared:
            return 0
        t = self._table
        query = update(t).where(
            t.c.worker_id == worker_id,
            t.c.gateway != gateway,
            t.c.seen_time >= time.time() - WORKER_FRESHNESS,
        )
        if session_id:
            query = query.where(t.c.session_id == session_id)
        async with self._sql.write() as conn:
            result = await conn.execute(query.values(drain=True))
        return int(result.rowcount)


def _worker(info: dict[str, Any], drain: bool) -> WorkerInfo:
    fields = dict(info)
    # JSON gives lists back where the dataclass holds tuples.
    fields["queues"] = tuple(fields.get("queues", ()))
    fields["job_types"] = tuple(fields.get("job_types", ()))
    fields["draining"] = bool(fields.get("draining")) or drain
    return WorkerInfo(**fields)
