"""Job records of the SQS provider, in the gateway's SQL database.

SQS cannot look a message up by id, so the state a client asks about (state,
attempts, last error, result, progress) lives in table ``jobwire_sqs_jobs``,
shared by every gateway on the same queues. ``jobwire_sqs_dedup_keys`` makes a
deduplication key taken by one job at a time across gateways.

Writes are buffered: providers change :class:`JobRecord` objects in memory and
call :meth:`JobRecords.save`; one flusher task commits everything saved since
its last commit in one transaction (group commit), then runs the callbacks
saved with it, which is where the provider's SQS calls that must follow the
write go (delete a finished job's message only once its end is recorded).
Reads look at the buffer first, so a gateway always reads its own writes.

Gateways write concurrently and may commit out of order, so an update never
moves a record back: it applies only if the record is not finished and the
update is as new or newer, ranked by attempt, and within an attempt
"processing" before its outcome. A finished state is never overwritten.

Schema changes: ``jobwire_sqs_schema`` holds one row, the version the tables
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
from jobwire.gateway.providers._types import QueueCounts
from jobwire.gateway.providers.sqs._buffer import Write, WriteBuffer
from jobwire.gateway.providers.sqs._reports import list_page, queue_counts
from jobwire.gateway.providers.sqs._tables import (
    COLUMNS as _J,
)
from jobwire.gateway.providers.sqs._tables import (
    COUNT_UNCOUNTED,
    SCHEMA_VERSION,
    TERMINAL,
    UPDATE,
    Base,
    DedupKey,
    PurgedJob,
    ReplayRequest,
    SchemaVersion,
    SharedWorker,
    StoredJob,
    insert_params,
    record_of,
    to_datetime,
    update_params,
)

logger = logging.getLogger("jobwire.gateway.sqs")

# Key of the PostgreSQL advisory lock that serializes table creation when
# several gateways start at once (the scheduler uses another key).
_SCHEMA_LOCK = 0x6A6F627371
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
        dedup: the deduplication rule, with the configured window.
        retention: seconds finished jobs are kept.
    """

    def __init__(self, url: str, *, dedup: DedupRule, retention: float) -> None:
        self.engine: AsyncEngine = create_engine(url, what="provider.database_url")
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
            Base.metadata,
            SchemaVersion,
            SCHEMA_VERSION,
            lock_key=_SCHEMA_LOCK,
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
                await conn.execute(UPDATE, params)
            if counted:
                await conn.execute(COUNT_UNCOUNTED, counted)

    async def _maybe_prune(self) -> None:
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        before = to_datetime(now - self._retention)
        try:
            async with self._connection() as conn:
                pruned = await conn.execute(
                    delete(StoredJob).where(_J.state.in_(TERMINAL), _J.end_time < before)
                )
                await conn.execute(delete(DedupKey).where(DedupKey.job_id.not_in(select(_J.id))))
                # Operators' leftovers: tombstones of purged jobs and RetryJobs
                # request ids live as long as finished jobs; streams of
                # gateways that stopped without clearing them, an hour.
                await conn.execute(delete(PurgedJob).where(PurgedJob.purge_time < before))
                await conn.execute(delete(ReplayRequest).where(ReplayRequest.create_time < before))
                stale = to_datetime(now - _PRUNE_EVERY)
                await conn.execute(delete(SharedWorker).where(SharedWorker.seen_time < stale))
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
                await conn.execute(insert(StoredJob), rows)
            if keys:
                # Take over only the keys whose holders let them go, as seen
                # here: a key another gateway took meanwhile makes the insert
                # collide, and the retry finds that gateway's job.
                stale = [(k, by_key[k].id) for k in keys if k in by_key]
                if stale:
                    await conn.execute(
                        delete(DedupKey).where(tuple_(DedupKey.key, DedupKey.job_id).in_(stale))
                    )
                await conn.execute(
                    insert(DedupKey), [{"key": k, "job_id": v} for k, v in keys.items()]
                )
        return results

    async def _duplicates(
        self, conn: AsyncConnection, jobs: Sequence[NewJob], now: float
    ) -> tuple[dict[str, JobRecord], dict[str, JobRecord]]:
        request_ids, keys = lookups(jobs)
        by_request: dict[str, JobRecord] = {}
        by_key: dict[str, JobRecord] = {}
        if request_ids:
            rows = await conn.execute(select(StoredJob).where(_J.request_id.in_(request_ids)))
            for row in rows.mappings():
                by_request[row["request_id"]] = self._fresh(row)
        if keys:
            held = _holders(keys)
            if self._postgres:
                # Two gateways taking over the same expired key take turns.
                held = held.with_for_update(of=DedupKey)
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
                await conn.execute(insert(StoredJob), [insert_params(record, "")])
        except IntegrityError:
            pass  # another gateway adopted it first

    async def delete(self, job_ids: Iterable[str]) -> None:
        """Remove records of jobs whose messages could not be sent."""
        ids = list(job_ids)
        for job_id in ids:
            self._buffer.forget(job_id)
        async with self._connection() as conn:
            await conn.execute(delete(DedupKey).where(DedupKey.job_id.in_(ids)))
            await conn.execute(delete(StoredJob).where(_J.id.in_(ids)))

    async def cancel(self, job_id: str, failure: Failure, now: float) -> JobRecord | None:
        """Cancel an unfinished job in the database; return the stored record, or None.

        Returns the job as it is after the attempt: cancelled, or unchanged when
        it had finished already. None when there is no such job.
        """
        await self.flush()
        stamp = to_datetime(now)
        async with self._connection() as conn:
            await conn.execute(
                update(StoredJob)
                .where(_J.id == job_id, _J.state.not_in(TERMINAL))
                .values(
                    state="cancelled",
                    update_time=stamp,
                    end_time=stamp,
                    last_error=failure_json(failure),
                )
            )
            row = (await conn.execute(select(StoredJob).where(_J.id == job_id))).mappings().first()
        return None if row is None else record_of(row)

    # Reads -------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job's record, buffered changes included; None when there is none."""
        buffered = self._buffer.buffered(job_id)
        if buffered is not None:
            return buffered
        async with self._connection() as conn:
            row = (await conn.execute(select(StoredJob).where(_J.id == job_id))).mappings().first()
        return None if row is None else record_of(row)

    async def for_receipt(self, job_ids: Sequence[str]) -> dict[str, ReceiptView]:
        """Return what receipt needs of each job that has a record."""
        async with self._connection() as conn:
            rows = await conn.execute(select(StoredJob).where(_J.id.in_(job_ids)))
            views = {
                row["id"]: ReceiptView(record_of(row), row["uncounted"]) for row in rows.mappings()
            }
        for job_id, view in views.items():
            view.record = self._buffer.buffered(job_id) or view.record
        return views

    async def load(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Return the committed records of ``job_ids`` (other gateways' changes included)."""
        async with self._connection() as conn:
            rows = await conn.execute(select(StoredJob).where(_J.id.in_(job_ids)))
            return [record_of(row) for row in rows.mappings()]

    async def cancelled_among(self, job_ids: Sequence[str]) -> list[str]:
        """Return which of ``job_ids`` another gateway cancelled."""
        async with self._connection() as conn:
            rows = await conn.scalars(
                select(_J.id).where(_J.id.in_(job_ids), _J.state == "cancelled")
            )
            return list(rows)

    async def list(
        self, where: JobFilter, limit: int, cursor: str | None, now: float
    ) -> tuple[list[JobRecord], str | None]:
        """Return up to ``limit`` jobs newest first after ``cursor``, and the next cursor."""
        await self.flush()
        return await list_page(self._connection, where, limit, cursor, now)

    async def counts(self, queue: str | None, now: float) -> dict[str, QueueCounts]:
        """Per queue: jobs by state, the oldest pending job's wait, the pending types."""
        await self.flush()
        return await queue_counts(self._connection, queue, now)

    async def key_holders(self, keys: Collection[str], now: float) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys now."""
        await self.flush()
        async with self._connection() as conn:
            rows = list((await conn.execute(_holders(keys))).mappings())
        found = {row["key"]: record_of(row) for row in rows}
        return {key: job for key, job in found.items() if self._dedup.holds(job, now)}

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection in a transaction; a lost or refused database is UNAVAILABLE."""
        return transaction(self.engine, "job records")


def _holders(keys: Collection[str]) -> Select[str, StoredJob]:
    """Each of ``keys`` that is taken, with the job that took it."""
    return (
        select(DedupKey.key, StoredJob)
        .join(StoredJob, StoredJob.id == DedupKey.job_id)
        .where(DedupKey.key.in_(keys))
    )
