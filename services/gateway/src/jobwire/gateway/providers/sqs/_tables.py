"""The SQS provider's job records as tables, and conversions between rows and records.

Schema changes: ``jobwire_sqs_schema`` holds one row, the version the tables
were created with (:data:`SCHEMA_VERSION`); see :mod:`jobwire.gateway._db`.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Index,
    String,
    and_,
    bindparam,
    case,
    or_,
    update,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobwire.gateway._db import TYPE_ANNOTATIONS, error_json, errors_of
from jobwire.gateway._errors import InvalidPageTokenError
from jobwire.gateway._models import JobRecord, JobState
from jobwire.v1 import job_pb2

logger = logging.getLogger("jobwire.gateway.sqs")

SCHEMA_VERSION = 1
"""Version of the tables below; see the module docstring."""

TERMINAL = [state.name.lower() for state in JobState if state.is_terminal]
PROCESSING = JobState.PROCESSING.name.lower()
PENDING = JobState.PENDING.name.lower()


class Base(DeclarativeBase):
    type_annotation_map = TYPE_ANNOTATIONS


class SchemaVersion(Base):
    """The version of the job records' schema (one row)."""

    __tablename__ = "jobwire_sqs_schema"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class StoredJob(Base):
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


class DedupKey(Base):
    """A deduplication key and the job that holds it."""

    __tablename__ = "jobwire_sqs_dedup_keys"

    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))


class PausedQueue(Base):
    """A queue whose deliveries are paused (``PauseQueue``), on every gateway."""

    __tablename__ = "jobwire_sqs_paused_queues"

    queue: Mapped[str] = mapped_column(String(128), primary_key=True)
    pause_time: Mapped[datetime]


class ReplayRequest(Base):
    """A ``RetryJobs`` request id and how many jobs it replayed (idempotency)."""

    __tablename__ = "jobwire_sqs_replay_requests"

    request_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    count: Mapped[int]
    create_time: Mapped[datetime]


class PurgedJob(Base):
    """A purged job whose message may still be in SQS: deleted when received."""

    __tablename__ = "jobwire_sqs_purged_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    purge_time: Mapped[datetime]


class SharedWorker(Base):
    """A worker stream of one gateway, as ``ListWorkers`` on every gateway shows it."""

    __tablename__ = "jobwire_sqs_workers"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(256))
    worker_id: Mapped[str] = mapped_column(String(256))
    info: Mapped[dict[str, Any]]
    seen_time: Mapped[datetime]
    drain: Mapped[bool] = mapped_column(default=False)
    """Another gateway asked this stream to drain (``DrainWorker``)."""


COLUMNS = StoredJob.__table__.c


def effective_state(now: datetime) -> ColumnElement[str]:
    """The state a client sees: a delayed or failed job whose time came is pending.

    Nothing tells the gateway when SQS makes a delayed or backed-off message
    visible again, so the stored state stays until the next receipt and reads
    correct it.
    """
    due = and_(COLUMNS.state.in_(["scheduled", "failed"]), COLUMNS.schedule_time <= now)
    return case((due, PENDING), else_=COLUMNS.state)


def effective(record: JobRecord, now: float) -> JobRecord:
    """Return ``record`` as a client sees it at ``now`` (see :func:`effective_state`).

    A job that came due is pending since its ``schedule_time`` (watchers
    compare update times).
    """
    if (
        record.state in (JobState.SCHEDULED, JobState.FAILED)
        and record.schedule_time is not None
        and record.schedule_time <= now
    ):
        return dataclasses.replace(
            record,
            state=JobState.PENDING,
            update_time=max(record.update_time, record.schedule_time),
        )
    return record


def rank(record: JobRecord) -> int:
    # Within attempt n, "processing" (2n) comes before the attempt's outcome (2n + 1).
    return 2 * record.attempt + (0 if record.state is JobState.PROCESSING else 1)


STORED_RANK = COLUMNS.attempt * 2 + case((COLUMNS.state == PROCESSING, 0), else_=1)
# Plain comparisons rather than NOT IN: executemany takes no expanding lists.
UNFINISHED = and_(*(COLUMNS.state != name for name in TERMINAL))
UPDATE = (
    update(StoredJob)
    .where(
        COLUMNS.id == bindparam("b_id"),
        UNFINISHED,
        or_(bindparam("b_final", type_=Boolean), bindparam("b_rank") >= STORED_RANK),
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
COUNT_UNCOUNTED = (
    update(StoredJob)
    .where(COLUMNS.id == bindparam("b_id"))
    .values(uncounted=COLUMNS.uncounted + bindparam("b_n"))
)


def update_params(record: JobRecord) -> dict[str, Any]:
    return {
        "b_id": record.id,
        "b_final": record.state.is_terminal,
        "b_rank": rank(record),
        "b_state": record.state.name.lower(),
        "b_attempt": record.attempt,
        "b_update_time": to_datetime(record.update_time),
        "b_schedule_time": optional_datetime(record.schedule_time),
        "b_end_time": optional_datetime(record.end_time),
        "b_worker_id": record.worker_id,
        "b_last_error": error_json(record),
        "b_result": record.result,
        "b_result_content_type": record.result_content_type,
        "b_progress": record.progress.SerializeToString() if record.progress else None,
    }


def insert_params(record: JobRecord, request_id: str) -> dict[str, Any]:
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
        "create_time": to_datetime(record.create_time),
        "update_time": to_datetime(record.update_time),
        "schedule_time": optional_datetime(record.schedule_time),
        "end_time": optional_datetime(record.end_time),
        "worker_id": record.worker_id,
        "last_error": error_json(record),
        "result": record.result,
        "result_content_type": record.result_content_type,
        "progress": record.progress.SerializeToString() if record.progress else None,
    }


def record_of(row: Any) -> JobRecord:
    progress = None
    if row["progress"] is not None:
        progress = job_pb2.JobProgress.FromString(row["progress"])
    last_error, errors = errors_of(row["last_error"])
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
        schedule_time=optional_epoch(row["schedule_time"]),
        update_time=row["update_time"].timestamp(),
        end_time=optional_epoch(row["end_time"]),
        attempt=row["attempt"],
        last_error=last_error,
        errors=errors,
        result=row["result"],
        result_content_type=row["result_content_type"],
        progress=progress,
        worker_id=row["worker_id"],
        schedule=row["schedule"],
    )


def to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def optional_datetime(seconds: float | None) -> datetime | None:
    return None if seconds is None else to_datetime(seconds)


def optional_epoch(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def from_db_time(value: Any) -> datetime:
    # An aggregate skips the column's type: SQLite answers text, PostgreSQL an aware datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    return (value - EPOCH) // MICROSECOND


def parse_cursor(cursor: str) -> tuple[datetime, str]:
    micros, sep, job_id = cursor.partition(".")
    if not sep or not micros.isdigit() or not job_id:
        raise InvalidPageTokenError("page_token", "not a token from this gateway")
    return EPOCH + int(micros) * MICROSECOND, job_id
