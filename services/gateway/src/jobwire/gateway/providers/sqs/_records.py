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

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Index,
    LargeBinary,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobwire.gateway._db import AWAY, UtcDateTime, brief, create_engine, open_schema
from jobwire.gateway._dedup import DedupRule, lookups
from jobwire.gateway._errors import InvalidPageTokenError, UnavailableError
from jobwire.gateway._models import Failure, JobRecord, JobState, NewJob
from jobwire.gateway.providers._types import JobFilter
from jobwire.v1 import job_pb2

logger = logging.getLogger("jobwire.gateway.sqs")

SCHEMA_VERSION = 1
"""Version of the tables below; see the module docstring."""

# Key of the PostgreSQL advisory lock that serializes table creation when
# several gateways start at once (the scheduler uses another key).
_SCHEMA_LOCK = 0x6A6F627371
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 5.0
_PRUNE_EVERY = 3600.0
_CLOSE_TIMEOUT = 5.0
# Concurrent enqueues of one deduplication key on two gateways: the loser of
# the insert race reads the winner's job on its next try.
_INSERT_TRIES = 3
_TERMINAL = [state.name.lower() for state in JobState if state.is_terminal]
_PROCESSING = JobState.PROCESSING.name.lower()
_PENDING = JobState.PENDING.name.lower()


class _Base(DeclarativeBase):
    type_annotation_map = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        bytes: LargeBinary(),
    }


class SchemaVersion(_Base):
    """The version of the job records' schema (one row)."""

    __tablename__ = "jobwire_sqs_schema"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class StoredJob(_Base):
    """One job of the SQS provider."""

    __tablename__ = "jobwire_sqs_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    queue: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(256))
    payload: Mapped[bytes]
    content_type: Mapped[str] = mapped_column(String(256))
    attributes: Mapped[dict[str, Any]]
    max_retries: Mapped[int]
    timeout: Mapped[float | None]
    deduplication_key: Mapped[str] = mapped_column(String(256))
    request_id: Mapped[str | None] = mapped_column(String(256), unique=True)
    """Idempotency key of the enqueue; NULL when none (NULLs never collide)."""
    schedule: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(16))
    """``JobState`` name in lower case, as stored; see :func:`effective_state`."""
    attempt: Mapped[int]
    uncounted: Mapped[int]
    """Receipts of the message that were not attempts (handed back unleased):
    the attempt number is ``ApproximateReceiveCount - uncounted``."""
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    schedule_time: Mapped[datetime | None]
    end_time: Mapped[datetime | None]
    worker_id: Mapped[str] = mapped_column(String(256))
    last_error: Mapped[dict[str, Any] | None]
    result: Mapped[bytes | None]
    result_content_type: Mapped[str] = mapped_column(String(256))
    progress: Mapped[bytes | None]
    """A serialized ``jobwire.v1.JobProgress``."""

    __table_args__ = (
        Index("ix_jobwire_sqs_jobs_listing", "create_time", "id"),
        Index("ix_jobwire_sqs_jobs_queue_state", "queue", "state"),
        Index("ix_jobwire_sqs_jobs_ended", "end_time"),
    )


class DedupKey(_Base):
    """A deduplication key and the job that holds it."""

    __tablename__ = "jobwire_sqs_dedup_keys"

    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))


_J = StoredJob.__table__.c


def effective_state(now: datetime) -> ColumnElement[str]:
    """The state a client sees: a delayed or failed job whose time came is pending.

    Nothing tells the gateway when SQS makes a delayed or backed-off message
    visible again, so the stored state stays until the next receipt and reads
    correct it.
    """
    due = and_(_J.state.in_(["scheduled", "failed"]), _J.schedule_time <= now)
    return case((due, _PENDING), else_=_J.state)


def effective(record: JobRecord, now: float) -> JobRecord:
    """Return ``record`` as a client sees it at ``now`` (see :func:`effective_state`)."""
    if (
        record.state in (JobState.SCHEDULED, JobState.FAILED)
        and record.schedule_time is not None
        and record.schedule_time <= now
    ):
        return dataclasses.replace(record, state=JobState.PENDING)
    return record


@dataclass(slots=True)
class ReceiptView:
    """What a receiving gateway needs to know of a job's record."""

    record: JobRecord
    uncounted: int


@dataclass(slots=True)
class _Write:
    record: JobRecord | None
    """The state to write; None when only ``uncounted`` changes."""
    uncounted: int = 0
    then: list[Callable[[], None]] = field(default_factory=list)


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
        self._pending: dict[str, _Write] = {}
        self._flushing: dict[str, _Write] = {}
        self._waiters: list[asyncio.Future[None]] = []
        self._dirty = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._next_prune = 0.0

    async def open(self) -> None:
        """Create missing tables, check the schema version and start the flusher.

        Raises:
            RuntimeError: the database is unreachable or holds another schema version.
        """
        await open_schema(
            self.engine,
            _Base.metadata,
            SchemaVersion,
            SCHEMA_VERSION,
            lock_key=_SCHEMA_LOCK,
            what="job records",
        )
        self._flusher = asyncio.create_task(self._flush_loop(), name="jobwire-sqs-records")

    async def close(self) -> None:
        """Commit what is buffered (waiting a few seconds at most), then disconnect."""
        if self._flusher is not None:
            try:
                await asyncio.wait_for(self.flush(), _CLOSE_TIMEOUT)
            except (TimeoutError, UnavailableError):
                logger.warning(
                    "job records: %d changes not committed at shutdown", len(self._pending)
                )
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        await self.engine.dispose()

    # Buffered writes ---------------------------------------------------------

    def save(self, record: JobRecord, then: Callable[[], None] | None = None) -> None:
        """Buffer ``record``'s current state; ``then`` runs once it is committed."""
        write = self._pending.get(record.id)
        if write is None:
            write = self._pending[record.id] = _Write(record)
        else:
            write.record = record
        if then is not None:
            write.then.append(then)
        self._dirty.set()

    def count_uncounted(self, job_id: str, then: Callable[[], None] | None = None) -> None:
        """Record that a receipt of the job's message was not an attempt; then run ``then``."""
        write = self._pending.get(job_id)
        if write is None:
            write = self._pending[job_id] = _Write(None)
        write.uncounted += 1
        if then is not None:
            write.then.append(then)
        self._dirty.set()

    async def flush(self) -> None:
        """Wait until everything saved before this call is committed.

        Raises:
            UnavailableError: the database failed; the writes stay buffered and
                are retried.
        """
        if not self._pending and not self._flushing:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._dirty.set()
        await asyncio.shield(waiter)

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            batch, self._pending = self._pending, {}
            waiters, self._waiters = self._waiters, []
            self._flushing = batch
            error: Exception | None = None
            try:
                if batch:
                    await self._commit(batch)
            except Exception as caught:
                error = caught
            finally:
                self._flushing = {}
            if error is not None:
                failures += 1
                self._requeue(batch)
                self._waiters[:0] = waiters
                delay = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (failures - 1))
                logger.warning(
                    "job records: commit of %d changes failed (%s); retrying in %.2fs",
                    len(batch),
                    error,
                    delay,
                    exc_info=failures == 1 and not isinstance(error, UnavailableError),
                )
                self._dirty.set()
                await asyncio.sleep(delay)
                continue
            failures = 0
            for write in batch.values():
                for then in write.then:
                    try:
                        then()
                    except Exception:
                        logger.exception("job records: a post-commit action failed")
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            await self._maybe_prune()

    def _requeue(self, batch: dict[str, _Write]) -> None:
        # A failed batch goes back in front of what was saved meanwhile.
        for job_id, write in batch.items():
            newer = self._pending.get(job_id)
            if newer is None:
                self._pending[job_id] = write
            else:
                newer.record = newer.record or write.record
                newer.uncounted += write.uncounted
                newer.then[:0] = write.then

    async def _commit(self, batch: dict[str, _Write]) -> None:
        params = [_update_params(w.record) for w in batch.values() if w.record is not None]
        counted = [
            {"b_id": job_id, "b_n": write.uncounted}
            for job_id, write in batch.items()
            if write.uncounted
        ]
        async with self._connection() as conn:
            if params:
                await conn.execute(_UPDATE, params)
            if counted:
                await conn.execute(_COUNT_UNCOUNTED, counted)

    async def _maybe_prune(self) -> None:
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY
        before = _datetime(now - self._retention)
        try:
            async with self._connection() as conn:
                pruned = await conn.execute(
                    delete(StoredJob).where(_J.state.in_(_TERMINAL), _J.end_time < before)
                )
                await conn.execute(delete(DedupKey).where(DedupKey.job_id.not_in(select(_J.id))))
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
        for attempt in range(1, _INSERT_TRIES + 1):
            try:
                return await self._insert(jobs, now)
            except IntegrityError:
                if attempt == _INSERT_TRIES:
                    raise UnavailableError(
                        "job records: concurrent enqueues of the same key kept colliding"
                    ) from None
        raise AssertionError("unreachable")

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
                rows.append(_insert_params(record, new.request_id))
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
            held = (
                select(DedupKey.key, StoredJob)
                .join(StoredJob, StoredJob.id == DedupKey.job_id)
                .where(DedupKey.key.in_(keys))
            )
            if self._postgres:
                # Two gateways taking over the same expired key take turns.
                held = held.with_for_update(of=DedupKey)
            for row in (await conn.execute(held)).mappings():
                by_key[row["key"]] = self._fresh(row)
        return by_request, by_key

    def _fresh(self, row: Any) -> JobRecord:
        """The record of ``row``, or the newer one this gateway has buffered."""
        return self._buffered(row["id"]) or _record(row)

    def _buffered(self, job_id: str) -> JobRecord | None:
        for writes in (self._pending, self._flushing):
            write = writes.get(job_id)
            if write is not None and write.record is not None:
                return write.record
        return None

    async def adopt(self, record: JobRecord) -> None:
        """Store the record of a message that has none (its record was pruned or lost)."""
        try:
            async with self._connection() as conn:
                await conn.execute(insert(StoredJob), [_insert_params(record, "")])
        except IntegrityError:
            pass  # another gateway adopted it first

    async def delete(self, job_ids: Iterable[str]) -> None:
        """Remove records of jobs whose messages could not be sent."""
        ids = list(job_ids)
        for job_id in ids:
            self._pending.pop(job_id, None)
        async with self._connection() as conn:
            await conn.execute(delete(DedupKey).where(DedupKey.job_id.in_(ids)))
            await conn.execute(delete(StoredJob).where(_J.id.in_(ids)))

    async def cancel(self, job_id: str, failure: Failure, now: float) -> JobRecord | None:
        """Cancel an unfinished job in the database; return the stored record, or None.

        Returns the job as it is after the attempt: cancelled, or unchanged when
        it had finished already. None when there is no such job.
        """
        await self.flush()
        stamp = _datetime(now)
        async with self._connection() as conn:
            await conn.execute(
                update(StoredJob)
                .where(_J.id == job_id, _J.state.not_in(_TERMINAL))
                .values(
                    state="cancelled",
                    update_time=stamp,
                    end_time=stamp,
                    last_error=_failure_json(failure),
                )
            )
            row = (await conn.execute(select(StoredJob).where(_J.id == job_id))).mappings().first()
        return None if row is None else _record(row)

    # Reads -------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job's record, buffered changes included; None when there is none."""
        buffered = self._buffered(job_id)
        if buffered is not None:
            return buffered
        async with self._connection() as conn:
            row = (await conn.execute(select(StoredJob).where(_J.id == job_id))).mappings().first()
        return None if row is None else _record(row)

    async def for_receipt(self, job_ids: Sequence[str]) -> dict[str, ReceiptView]:
        """Return what receipt needs of each job that has a record."""
        async with self._connection() as conn:
            rows = await conn.execute(select(StoredJob).where(_J.id.in_(job_ids)))
            views = {
                row["id"]: ReceiptView(_record(row), row["uncounted"]) for row in rows.mappings()
            }
        for job_id, view in views.items():
            view.record = self._buffered(job_id) or view.record
        return views

    async def load(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """Return the committed records of ``job_ids`` (other gateways' changes included)."""
        async with self._connection() as conn:
            rows = await conn.execute(select(StoredJob).where(_J.id.in_(job_ids)))
            return [_record(row) for row in rows.mappings()]

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
        stamp = _datetime(now)
        query = select(StoredJob).order_by(_J.create_time.desc(), _J.id.desc()).limit(limit + 1)
        if where.queue:
            query = query.where(_J.queue == where.queue)
        if where.type:
            query = query.where(_J.type == where.type)
        if where.states:
            names = [state.name.lower() for state in where.states]
            query = query.where(effective_state(stamp).in_(names))
        if cursor is not None:
            created, job_id = _parse_cursor(cursor)
            query = query.where(
                or_(_J.create_time < created, and_(_J.create_time == created, _J.id < job_id))
            )
        async with self._connection() as conn:
            rows = list((await conn.execute(query)).mappings())
        page = [effective(_record(row), now) for row in rows[:limit]]
        if len(rows) <= limit:
            return page, None
        last = rows[limit - 1]
        return page, f"{_micros(last['create_time'])}.{last['id']}"

    async def counts(
        self, queue: str | None, now: float
    ) -> dict[str, tuple[dict[JobState, int], float | None]]:
        """Per queue: jobs by state and since when the oldest pending job waits."""
        await self.flush()
        stamp = _datetime(now)
        state = effective_state(stamp)
        by_state = select(_J.queue, state, func.count()).group_by(_J.queue, state)
        since = case((_J.state == _PENDING, _J.update_time), else_=_J.schedule_time)
        oldest = select(_J.queue, func.min(since)).where(state == _PENDING).group_by(_J.queue)
        if queue is not None:
            by_state = by_state.where(_J.queue == queue)
            oldest = oldest.where(_J.queue == queue)
        result: dict[str, tuple[dict[JobState, int], float | None]] = {}
        async with self._connection() as conn:
            for name, state_name, count in await conn.execute(by_state):
                entry = result.setdefault(name, (dict.fromkeys(JobState, 0), None))
                entry[0][JobState[state_name.upper()]] = count
            for name, first in await conn.execute(oldest):
                if name in result and first is not None:
                    result[name] = (result[name][0], _from_db_time(first).timestamp())
        return result

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction; a lost or refused database is UNAVAILABLE."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except AWAY as error:
            raise UnavailableError(f"job records database unavailable: {brief(error)}") from error


def _rank(record: JobRecord) -> int:
    # Within attempt n, "processing" (2n) comes before the attempt's outcome (2n + 1).
    return 2 * record.attempt + (0 if record.state is JobState.PROCESSING else 1)


_STORED_RANK = _J.attempt * 2 + case((_J.state == _PROCESSING, 0), else_=1)
# Plain comparisons rather than NOT IN: executemany takes no expanding lists.
_UNFINISHED = and_(*(_J.state != name for name in _TERMINAL))
_UPDATE = (
    update(StoredJob)
    .where(
        _J.id == bindparam("b_id"),
        _UNFINISHED,
        or_(bindparam("b_final", type_=Boolean), bindparam("b_rank") >= _STORED_RANK),
    )
    .values(
        state=bindparam("b_state"),
        attempt=bindparam("b_attempt"),
        update_time=bindparam("b_update_time"),
        schedule_time=bindparam("b_schedule_time"),
        end_time=bindparam("b_end_time"),
        worker_id=bindparam("b_worker_id"),
        last_error=bindparam("b_last_error"),
        result=bindparam("b_result"),
        result_content_type=bindparam("b_result_content_type"),
        progress=bindparam("b_progress"),
    )
)
_COUNT_UNCOUNTED = (
    update(StoredJob)
    .where(_J.id == bindparam("b_id"))
    .values(uncounted=_J.uncounted + bindparam("b_n"))
)


def _update_params(record: JobRecord) -> dict[str, Any]:
    return {
        "b_id": record.id,
        "b_final": record.state.is_terminal,
        "b_rank": _rank(record),
        "b_state": record.state.name.lower(),
        "b_attempt": record.attempt,
        "b_update_time": _datetime(record.update_time),
        "b_schedule_time": _optional_datetime(record.schedule_time),
        "b_end_time": _optional_datetime(record.end_time),
        "b_worker_id": record.worker_id,
        "b_last_error": _failure_json(record.last_error),
        "b_result": record.result,
        "b_result_content_type": record.result_content_type,
        "b_progress": record.progress.SerializeToString() if record.progress else None,
    }


def _insert_params(record: JobRecord, request_id: str) -> dict[str, Any]:
    return {
        "id": record.id,
        "queue": record.queue,
        "type": record.type,
        "payload": record.payload,
        "content_type": record.content_type,
        "attributes": record.attributes,
        "max_retries": record.max_retries,
        "timeout": record.timeout,
        "deduplication_key": record.deduplication_key,
        "request_id": request_id or None,
        "schedule": record.schedule,
        "state": record.state.name.lower(),
        "attempt": record.attempt,
        "uncounted": 0,
        "create_time": _datetime(record.create_time),
        "update_time": _datetime(record.update_time),
        "schedule_time": _optional_datetime(record.schedule_time),
        "end_time": _optional_datetime(record.end_time),
        "worker_id": record.worker_id,
        "last_error": _failure_json(record.last_error),
        "result": record.result,
        "result_content_type": record.result_content_type,
        "progress": record.progress.SerializeToString() if record.progress else None,
    }


def _record(row: Any) -> JobRecord:
    progress = None
    if row["progress"] is not None:
        progress = job_pb2.JobProgress.FromString(row["progress"])
    error = row["last_error"]
    return JobRecord(
        id=row["id"],
        queue=row["queue"],
        type=row["type"],
        payload=row["payload"],
        content_type=row["content_type"],
        attributes=dict(row["attributes"]),
        max_retries=row["max_retries"],
        timeout=row["timeout"],
        deduplication_key=row["deduplication_key"],
        create_time=row["create_time"].timestamp(),
        state=JobState[row["state"].upper()],
        schedule_time=_optional_epoch(row["schedule_time"]),
        update_time=row["update_time"].timestamp(),
        end_time=_optional_epoch(row["end_time"]),
        attempt=row["attempt"],
        last_error=Failure(**error) if error is not None else None,
        result=row["result"],
        result_content_type=row["result_content_type"],
        progress=progress,
        worker_id=row["worker_id"],
        schedule=row["schedule"],
    )


def _failure_json(failure: Failure | None) -> dict[str, Any] | None:
    return None if failure is None else dataclasses.asdict(failure)


def _datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _optional_datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else _datetime(seconds)


def _optional_epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _from_db_time(value: Any) -> datetime:
    # An aggregate skips the column's type: SQLite answers text, PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    micros, sep, job_id = cursor.partition(".")
    if not sep or not micros.isdigit() or not job_id:
        raise InvalidPageTokenError("page_token", "not a token from this gateway")
    return _EPOCH + int(micros) * _MICROSECOND, job_id
