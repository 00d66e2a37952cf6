"""Gateways on one database: heartbeats, and the leases of gateways that died.

Each gateway has a row in ``<prefix>gateways`` whose ``heartbeat`` it
refreshes every ``heartbeat_interval``. Every gateway also looks, as often,
for jobs leased by a gateway whose heartbeat lapsed ``heartbeat_timeout`` ago
(or that has no row: it stopped, or it ran on this SQLite file before a
restart) and releases them, each counted as an attempt (the retry rule's
``after_loss``: ready again at once, or dead when that was the last attempt).
Gateways reaping at once skip each other's rows (``SKIP LOCKED``).

A gateway also checks the jobs it leases: one cancelled or released by
another gateway (a ``NOTIFY`` it missed, or its own heartbeat lapsed) is
revoked here (``host.lost``); one the table says it leases but no lease here
holds (a write whose outcome its dropped connection took with it) is
released. And it reads back, every heartbeat, the jobs its ``WatchJob`` and
``WatchJobs`` streams watch that it does not lease: another gateway may be
running or cancelling them.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, Delete, delete, insert, or_, select, text, update

from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import Failure, JobRecord, JobState
from jobwire.gateway.providers._retry import RetryPolicy
from jobwire.gateway.providers._types import RevokeReason
from jobwire.gateway.providers.base import ProviderHost
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._reads import Reads
from jobwire.gateway.providers.sql._rows import record_of
from jobwire.gateway.providers.sql._tables import PROCESSING
from jobwire.gateway.providers.sql._wake import Wakeups
from jobwire.gateway.providers.sql._writes import Writes

logger = logging.getLogger("jobwire.gateway.sql")

_REAP_BATCH = 500


class Fleet:
    """This gateway's heartbeat, and the release of dead gateways' leases."""

    def __init__(
        self,
        sql: Sql,
        writes: Writes,
        reads: Reads,
        wakeups: Wakeups,
        events: JobEvents,
        host: Callable[[], ProviderHost],
        *,
        timeout: float,
    ) -> None:
        self._sql = sql
        self._writes = writes
        self._reads = reads
        self._wakeups = wakeups
        self._events = events
        self._host = host
        self._timeout = timeout
        # Jobs leased here in the table that no lease here held at the last look.
        self._stranded: set[tuple[str, int]] = set()

    async def join(self) -> None:
        """Register this gateway (on SQLite, the file's only one: earlier rows are dead)."""
        now = time.time()
        gateways = self._sql.tables.gateways
        async with self._sql.write() as conn:
            if not self._sql.postgres:
                # The file lock proves every other gateway of this file gone:
                # its leases are released at once, not a heartbeat later.
                await conn.execute(delete(gateways))
            await conn.execute(
                insert(gateways).values(
                    id=self._sql.gateway_id, heartbeat=now, started=now, host=socket.gethostname()
                )
            )

    async def leave(self) -> None:
        """Remove this gateway's row: its remaining leases are released by the next reaper."""
        gateways = self._sql.tables.gateways
        async with self._sql.write() as conn:
            await conn.execute(delete(gateways).where(gateways.c.id == self._sql.gateway_id))

    async def beat(self) -> None:
        """Refresh the heartbeat; if another gateway declared this one dead, join again."""
        gateways = self._sql.tables.gateways
        async with self._sql.write(async_commit=True) as conn:
            done = await conn.execute(
                update(gateways)
                .where(gateways.c.id == self._sql.gateway_id)
                .values(heartbeat=time.time())
            )
        if done.rowcount == 0:
            logger.warning("this gateway's heartbeat had lapsed; its leases were released")
            await self.join()
            await self.check_leases()

    async def reap(self) -> int:
        """Release the leases of dead gateways; return how many."""
        released = 0
        while True:
            batch = await self._reap_batch(time.time())
            released += batch
            if batch < _REAP_BATCH:
                return released

    async def _reap_batch(self, now: float) -> int:
        gateways = self._sql.tables.gateways
        c = self._sql.jobs.c
        live = select(gateways.c.id).where(gateways.c.heartbeat >= now - self._timeout)
        released, taken = await self._release(
            or_(c.gateway_id.is_(None), c.gateway_id.not_in(live)),
            now,
            lambda gone: f"gateway {gone} stopped during the attempt (heartbeat lapsed)",
            "GATEWAY_LOST",
            forget=delete(gateways).where(gateways.c.heartbeat < now - self._timeout),
        )
        if released:
            logger.info("released %d leases of gateways that stopped", released)
        return taken

    async def release_stranded(self, busy: Callable[[str], bool]) -> int:
        """Release the jobs leased here in the table that no lease here holds; how many.

        A write whose outcome was lost with its connection (a claim that
        committed as the backend was terminated, an ending that failed for
        good) leaves a job leased by this live gateway that nobody works on:
        its heartbeat goes on, so no other gateway would release it. A job
        seen so at two looks in a row (``busy``: a claim or write of it in
        flight here is not) is released as a lost attempt.
        """
        c = self._sql.jobs.c
        async with self._sql.read() as conn:
            rows = await conn.execute(
                select(c.id, c.attempt).where(
                    text(f"state = {PROCESSING}"), c.gateway_id == self._sql.gateway_id
                )
            )
            leased = {(job_id, attempt) for job_id, attempt in rows}
        held = self._host().leased_job_ids()
        stranded = {(job_id, a) for job_id, a in leased if job_id not in held and not busy(job_id)}
        confirmed, self._stranded = stranded & self._stranded, stranded
        if not confirmed:
            return 0
        self._stranded -= confirmed
        released, _ = await self._release(
            c.id.in_(sorted(job_id for job_id, _ in confirmed))
            & (c.gateway_id == self._sql.gateway_id),
            time.time(),
            lambda _: "the gateway lost the lease (its database connection failed)",
            "LEASE_LOST",
            # Not a later attempt: one claimed again since is another lease.
            keep=lambda row: (row["id"], row["attempt"]) in confirmed,
        )
        if released:
            logger.warning("released %d jobs leased here that no worker held", released)
        return released

    async def _release(
        self,
        which: ColumnElement[bool],
        now: float,
        message: Callable[[str], str],
        kind: str,
        forget: Delete | None = None,
        keep: Callable[[Any], bool] = lambda _: True,
    ) -> tuple[int, int]:
        """End the attempts of the processing jobs ``which`` selects, as lost; (ended, taken)."""
        query = (
            select(self._sql.jobs)
            .where(text(f"state = {PROCESSING}"), which)
            .limit(_REAP_BATCH)
            .with_for_update(skip_locked=True)
        )
        async with self._sql.write() as conn:
            rows = list((await conn.execute(query)).mappings())
            records: list[JobRecord] = []
            for row in rows:
                if not keep(row):
                    continue
                record = record_of(row)
                failure = Failure(
                    message(row["gateway_id"] or "unknown"), kind, attempt=record.attempt
                )
                record.end_attempt(RetryPolicy.after_loss(record, failure, now))
                records.append(record)
            written = (
                await self._writes.apply_endings(conn, records, [r.attempt for r in records])
                if records
                else set()
            )
            queues = {r.queue for r in records if r.id in written and not r.state.is_terminal}
            await self._sql.notify_ready(conn, queues)
            if forget is not None:
                await conn.execute(forget)
        if written:
            self._wakeups.notify(queues)
            for record in records:
                if record.id in written:
                    self._events.publish(record)
        return len(written), len(rows)

    async def check_leases(self) -> None:
        """Revoke this gateway's leases on jobs cancelled or released elsewhere."""
        host = self._host()
        leased = list(host.leased_job_ids())
        if not leased:
            return
        stored = await self._reads.states(leased)
        for job_id in leased:
            state, gateway = stored.get(job_id, (None, None))
            if state == PROCESSING and gateway == self._sql.gateway_id:
                continue
            if job_id not in host.leased_job_ids():
                continue  # answered meanwhile
            if state == JobState.CANCELLED.value:
                host.lost(job_id, RevokeReason.CANCELLED, "job cancelled through another gateway")
            else:
                host.lost(job_id, RevokeReason.EXPIRED, "another gateway released the lease")

    async def refresh_watched(self) -> None:
        """Tell this gateway's watchers of the changes other gateways made to watched jobs."""
        watched = self._events.watched()
        if not watched:
            return
        here = self._host().leased_job_ids()
        elsewhere = [job_id for job_id in watched if job_id not in here]
        if elsewhere:
            for record in await self._reads.get_many(elsewhere, time.time()):
                self._events.publish_if_newer(record)
