"""Job records of a broker provider (SQS, RabbitMQ), in the gateway's SQL database.

A broker cannot look a message up by id, so the state a client asks about
(state, attempts, last error, result, progress) lives in table
``<prefix>jobs``, shared by every gateway on the same queues.
``<prefix>dedup_keys`` makes a deduplication key taken by one job at a time
across gateways.

Writes are buffered: providers change :class:`JobRecord` objects in memory and
call :meth:`JobRecords.save`; one flusher task commits everything saved since
its last commit in one transaction (group commit), then runs the callbacks
saved with it, which is where the provider's broker calls that must follow
the write go (delete or ack a finished job's message only once its end is
recorded).
Reads look at the buffer first, so a gateway always reads its own writes.

Gateways write concurrently and may commit out of order, so an update never
moves a record back: it applies only if the record is not finished and the
update is as new or newer, ranked by attempt, and within an attempt
"processing" before its outcome. A finished state is never overwritten.

Schema changes: ``<prefix>schema`` holds one row, the version the tables
were created with (:data:`SCHEMA_VERSION`); the gateway creates missing tables
at start-up and refuses a database whose version it does not know, as the
scheduler does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Select,
    delete,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from jobwire.gateway._db import create_engine, failure_json, open_schema, transaction
from jobwire.gateway._dedup import DedupRule, admit_again, lookups
from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._models import Failure, JobFilter, JobRecord, NewJob
from jobwire.gateway.providers._records._buffer import Write, WriteBuffer
from jobwire.gateway.providers._records._reports import list_page, queue_counts
from jobwire.gateway.providers._records._tables import (
    SCHEMA_VERSION,
    TERMINAL,
    RecordTables,
    insert_params,
    record_of,
    to_datetime,
    update_params,
)
from jobwire.gateway.providers._types import QueueCounts

logger = logging.getLogger("jobwire.gateway.records")

_PRUNE_EVERY = 3600.0
_CLOSE_TIMEOUT = 5.0


@dataclass(slots=True)
class ReceiptView:
    """What a receiving gateway needs to know of a job's record."""

    record: JobRecord
    uncounted: int


class JobRecords:
    """Buffered access to the job records on SQLite or PostgreSQL.

    Args:
        url: SQLAlchemy URL of the database.
        tables: the provider's tables.
        dedup: the deduplication rule, with the configured window.
        retention: seconds finished jobs are kept.
    """

    def __init__(
        self,
        url: str,
        *,
        tables: RecordTables,
        dedup: DedupRule,
        retention: float,
    ) -> None:
        self.engine: AsyncEngine = create_engine(url, what="provider.database_url")
        self.tables = tables
        self._postgres = self.engine.dialect.name == "postgresql"
        self._dedup = dedup
        self._retention = retention
        self._buffer = WriteBuffer(self._commit, self._maybe_prune)
        self._next_prune = 0.0

    async def open(self) -> None:
        """Create missing tables, check the schema version and start the flusher.

        Raises:
            RuntimeError: the database is unreachable or holds another schema version.
        """
        await open_schema(
            self.engine,
            self.tables.metadata,
            self.tables.schema,
            SCHEMA_VERSION,
            lock_key=self.tables.lock_key,
            what="job records",
        )
        self._buffer.start()

    async def close(self) -> None:
        """Commit what is buffered (waiting a few seconds at most), then disconnect."""
        await self._buffer.close(_CLOSE_TIMEOUT)
        await self.engine.dispose()

    # Buffered writes ---------------------------------------------------------

    def save(self, record: JobRecord, then: Callable[[], None] | None = None) -> None:
        """Buffer ``record``'s current state; ``then`` runs once it is committed."""
        self._buffer.save(record, then)

    def count_uncounted(self, job_id: str, then: Callable[[], None] | None = None) -> None:
        """Record that a receipt of the job's message was not an attempt; then run ``then``."""
        self._buffer.count_uncounted(job_id, then)

    def forget(self, job_id: str) -> None:
        """Drop what is buffered for a job about to be deleted."""
        self._buffer.forget(job_id)

    async def flush(self) -> None:
        """Wait until everything saved before this call is committed (see ``WriteBuffer``)."""
        await self._buffer.flush()

    async def _commit(self, batch: dict[str, Write]) -> None:
        params = [update_params(w.record) for w in batch.values() if w.record is not None]
        counted = [
            {"b_id": job_id, "b_n": write.uncounted}
            for job_id, write in batch.items()
            if write.uncounted
        ]
        async with self._connection() as conn:
            if params:
                await conn.execute(self.tables.update, params)
            if counted:
                await conn.execute(self.tables.count_uncounted, counted)

    async def _maybe_prune(self) -> None:
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        before = to_datetime(now - self._retention)
        t = self.tables
        jobs = t.jobs.c
        try:
            async with self._connection() as conn:
                pruned = await conn.execute(
                    delete(t.jobs).where(jobs.state.in_(TERMINAL), jobs.end_time < before)
                )
                keys = t.dedup_keys.c
                await conn.execute(delete(t.dedup_keys).where(keys.job_id.not_in(select(jobs.id))))
                # Operators' leftovers: tombstones of purged jobs and RetryJobs
                # request ids live as long as finished jobs; streams of
                # gateways that stopped without clearing them, an hour.
                await conn.execute(delete(t.purged).where(t.purged.c.purge_time < before))
                requests = t.replay_requests
                await conn.execute(delete(requests).where(requests.c.create_time < before))
                stale = to_datetime(now - _PRUNE_EVERY)
                await conn.execute(delete(t.workers).where(t.workers.c.seen_time < stale))
        except UnavailableError as error:
            logger.warning("job records: pruning failed (%s); next try in an hour", error)
            return
        if pruned.rowcount:
            logger.info("job records: pruned %d finished jobs", pruned.rowcount)

    # Direct writes -----------------------------------------------------------

    async def insert(
        self, jobs: Sequence[tuple[NewJob, JobRecord]], now: float
    ) -> list[tuple[JobRecord, bool]]:
        """Store new jobs, returning each stored job and whether it was a duplicate.

        A job whose request id was seen before, or whose deduplication key is
        held by an unfinished job (or one finished within the dedup window),
        is not stored again: the existing job is returned with True.
        """
        if any(new.deduplication_key for new, _ in jobs):
            await self.flush()  # a job this gateway just finished frees its key
        return await admit_again(lambda: self._insert(jobs, now), "job records")

    async def _insert(
        self, jobs: Sequence[tuple[NewJob, JobRecord]], now: float
    ) -> list[tuple[JobRecord, bool]]:
        prepared = {id(new): record for new, record in jobs}
        news = [new for new, _ in jobs]
        async with self._connection() as conn:
            by_request, by_key = await self._duplicates(conn, news, now)
            results = self._dedup.admit(
                news, now, lambda new: prepared[id(new)], by_request=by_request, by_key=by_key
            )
            rows: list[dict[str, Any]] = []
            keys: dict[str, str] = {}
            for new, (record, duplicate) in zip(news, results, strict=True):
                if duplicate:
                    continue
                rows.append(insert_params(record, new.request_id))
                if new.deduplication_key:
                    keys[new.deduplication_key] = record.id
            if rows:
                await conn.execute(insert(self.tables.jobs), rows)
            if keys:
                # Take over only the keys whose holders let them go, as seen
                # here: a key another gateway took meanwhile makes the insert
                # collide, and the retry finds that gateway's job.
                stale = [(k, by_key[k].id) for k in keys if k in by_key]
                held = self.tables.dedup_keys
                if stale:
                    await conn.execute(
                        delete(held).where(tuple_(held.c.key, held.c.job_id).in_(stale))
                    )
                await conn.execute(insert(held), [{"key": k, "job_id": v} for k, v in keys.items()])
        return results

    async def _duplicates(
        self, conn: AsyncConnection, jobs: Sequence[NewJob], now: float
    ) -> tuple[dict[str, JobRecord], dict[str, JobRecord]]:
        request_ids, keys = lookups(jobs)
        by_request: dict[str, JobRecord] = {}
        by_key: dict[str, JobRecord] = {}
        stored = self.tables.jobs
        if request_ids:
            rows = await conn.execute(select(stored).where(stored.c.request_id.in_(request_ids)))
            for row in rows.mappings():
                by_request[row["request_id"]] = self._fresh(row)
        if keys:
            held = _holders(self.tables, keys)
            if self._postgres:
                # Two gateways taking over the same expired key take turns.
                held = held.with_for_update(of=self.tables.dedup_keys)
            for row in (await conn.execute(held)).mappings():
                by_key[row["key"]] = self._fresh(row)
        return by_request, by_key

    def _fresh(self, row: Any) -> JobRecord:
        """The record of ``row``, or the newer one this gateway has buffered."""
        return self._buffer.buffered(row["id"]) or record_of(row)

    async def adopt(self, record: JobRecord) -> None:
        """Store the record of a message that has none (its record was pruned or lost)."""
        try:
            async with self._connection() as conn:
                await conn.execute(insert(self.tables.jobs), [insert_params(record, "")])
        except IntegrityError:
            pass  # another gateway adopted it first

    async def take_over(self, record: JobRecord) -> bool:
        """Commit ``record`` (a lost attempt ended, the next begun) now; False if its job moved on.

        For a job whose lease was lost with another gateway: the takeover
        commits the next attempt before the job is leased again, so a late
        finish of the lost attempt on that gateway either came first (and the
        job is not run again) or is refused (an older attempt than the stored one).
        """
        self._buffer.forget(record.id)
        async with self._connection() as conn:
            result = await conn.execute(self.tables.update, update_params(record))
        return bool(result.rowcount)

    async def delete(self, job_ids: Iterable[str]) -> None:
        """Remove records of jobs whose messages could not be sent."""
        ids = list(job_ids)
        for job_id in ids:
            self._buffer.forget(job_id)
        t = self.tables
        async with self._connection() as conn:
            await conn.execute(delete(t.dedup_keys).where(t.dedup_keys.c.job_id.in_(ids)))
            await conn.execute(delete(t.jobs).where(t.jobs.c.id.in_(ids)))

    async def cancel(self, job_id: str, failure: Failure, now: float) -> JobRecord | None:
        """Cancel an unfinished job in the database; return the stored record, or None.

        Returns the job as it is after the attempt: cancelled, or unchanged when
        it had finished already. None when there is no such job.
        """
        await self.flush()
        stamp = to_datetime(now)
        jobs = self.tables.jobs
        async with self._connection() as conn:
            await conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.state.not_in(TERMINAL))
                .values(
                    state="cancelled",
                    update_time=stamp,
                    end_time=stamp,
                    last_error=failure_json(failure),
                )
            )
            row = (await conn.execute(self._by_id(job_id))).mappings().first()
        return None if row is None else record_of(row)

    # Reads -------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job's record, buffered changes included; None when there is none."""
        buffered = self._buffer.buffered(job_id)
        if buffered is not None:
            return buffered
        async with self._connection() as conn:
            row = (await conn.execute(self._by_id(job_id))).mappings().first()
        return None if row is None else record_of(row)

    def _by_id(self, job_id: str) -> Select[Any]:
        jobs = self.tables.jobs
        return select(jobs).where(jobs.c.id == job_id)

    async def for_receipt(self, job_ids: Sequence[str]) -> dict[str, ReceiptView]:
        """Return what receipt needs of each job that has a record."""
        async with self._connection() as conn:
            rows = await conn.execute(self._among(job_ids))
            views = {
                row["id"]: ReceiptView(record_of(row), row["uncounted"]) for row in rows.mappings()
            }
        for job_id, view in views.items():
            view.record = self._buffer.buffered(job_id) or view.record
        return views

    async def load(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Return the committed records of ``job_ids`` (other gateways' changes included)."""
        async with self._connection() as conn:
            rows = await conn.execute(self._among(job_ids))
            return [record_of(row) for row in rows.mappings()]

    async def cancelled_among(self, job_ids: Sequence[str]) -> list[str]:
        """Return which of ``job_ids`` another gateway cancelled."""
        async with self._connection() as conn:
            jobs = self.tables.jobs.c
            rows = await conn.scalars(
                select(jobs.id).where(jobs.id.in_(job_ids), jobs.state == "cancelled")
            )
            return list(rows)

    async def list(
        self, where: JobFilter, limit: int, cursor: str | None, now: float
    ) -> tuple[list[JobRecord], str | None]:
        """Return up to ``limit`` jobs newest first after ``cursor``, and the next cursor."""
        await self.flush()
        return await list_page(self.tables, self._connection, where, limit, cursor, now)

    async def counts(self, queue: str | None, now: float) -> dict[str, QueueCounts]:
        """Per queue: jobs by state, the oldest pending job's wait, the pending types."""
        await self.flush()
        return await queue_counts(self.tables, self._connection, queue, now)

    async def key_holders(self, keys: Collection[str], now: float) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys now."""
        await self.flush()
        async with self._connection() as conn:
            rows = list((await conn.execute(_holders(self.tables, keys))).mappings())
        found = {row["key"]: record_of(row) for row in rows}
        return {key: job for key, job in found.items() if self._dedup.holds(job, now)}

    def _among(self, job_ids: Sequence[str]) -> Select[Any]:
        jobs = self.tables.jobs
        return select(jobs).where(jobs.c.id.in_(job_ids))

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a transaction; a lost or refused database is UNAVAILABLE."""
        return transaction(self.engine, "job records")


def _holders(tables: RecordTables, keys: Collection[str]) -> Select[Any]:
    """Each of ``keys`` that is taken, with the job that took it."""
    held = tables.dedup_keys
    return (
        select(held.c.key, tables.jobs)
        .join(tables.jobs, tables.jobs.c.id == held.c.job_id)
        .where(held.c.key.in_(keys))
    )
