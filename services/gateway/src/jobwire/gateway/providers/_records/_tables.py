"""Job records of the broker providers as tables, and conversions between rows and records.

The SQS and RabbitMQ providers keep their jobs' state (attempts, results,
errors), deduplication keys, paused queues, ``RetryJobs`` request ids, purged
jobs' tombstones and worker streams in the gateway's database, in tables of
the same shape named by a prefix (``jobwire_sqs_``, ``jobwire_rabbitmq_``):
:class:`RecordTables`.

Schema changes: ``<prefix>schema`` holds one row, the version the tables
were created with (:data:`SCHEMA_VERSION`); see :mod:`jobwire.gateway._db`.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    or_,
    update,
)

from jobwire.gateway._db import UtcDateTime, error_json, record_of_row
from jobwire.gateway._errors import InvalidPageTokenError
from jobwire.gateway._models import JobRecord, JobState

logger = logging.getLogger("jobwire.gateway.records")

SCHEMA_VERSION = 1
"""Version of the tables below; see the module docstring."""

TERMINAL = [state.name.lower() for state in JobState if state.is_terminal]
PROCESSING = JobState.PROCESSING.name.lower()
PENDING = JobState.PENDING.name.lower()


class RecordTables:
    """The tables of one provider's job records, named ``<prefix>…``.

    ``jobs`` holds one row per job (``state`` is the ``JobState`` name in lower
    case, as stored; see :meth:`effective_state`; ``uncounted`` counts the
    deliveries of its message that were no attempt); ``dedup_keys`` maps a
    deduplication key to the job holding it; ``paused`` the paused queues;
    ``replay_requests`` the ``RetryJobs`` request ids and their counts;
    ``purged`` tombstones of purged jobs whose messages may still be in the
    broker; ``workers`` every gateway's worker streams (``WorkerRows``).

    Args:
        prefix: the tables' name prefix.
        lock_key: key of the PostgreSQL advisory lock that serializes creating
            them when several gateways start at once (one per provider; the
            scheduler uses another).
    """

    def __init__(self, prefix: str, *, lock_key: int) -> None:
        self.prefix = prefix
        self.lock_key = lock_key
        self.metadata = MetaData()
        meta = self.metadata
        self.schema = Table(
            f"{prefix}schema",
            meta,
            Column("version", Integer, primary_key=True, autoincrement=False),
        )
        self.jobs = Table(
            f"{prefix}jobs",
            meta,
            Column("id", String(64), primary_key=True),
            Column("queue", String(128), nullable=False),
            Column("type", String(256), nullable=False),
            Column("payload", LargeBinary, nullable=False),
            Column("content_type", String(256), nullable=False),
            Column("attributes", JSON, nullable=False),
            Column("max_retries", Integer, nullable=False),
            Column("timeout", Float, nullable=True),
            Column("deduplication_key", String(256), nullable=False),
            # Idempotency key of the enqueue; NULL when none (NULLs never collide).
            Column("request_id", String(256), unique=True, nullable=True),
            Column("schedule", String(128), nullable=False),
            Column("state", String(16), nullable=False),
            Column("attempt", Integer, nullable=False),
            Column("uncounted", Integer, nullable=False),
            Column("create_time", UtcDateTime, nullable=False),
            Column("update_time", UtcDateTime, nullable=False),
            Column("schedule_time", UtcDateTime, nullable=True),
            Column("end_time", UtcDateTime, nullable=True),
            Column("worker_id", String(256), nullable=False),
            Column("last_error", JSON, nullable=True),
            Column("result", LargeBinary, nullable=True),
            Column("result_content_type", String(256), nullable=False),
            # A serialized jobwire.v1.JobProgress.
            Column("progress", LargeBinary, nullable=True),
            Index(f"ix_{prefix}jobs_listing", "create_time", "id"),
            Index(f"ix_{prefix}jobs_queue_state", "queue", "state"),
            Index(f"ix_{prefix}jobs_ended", "end_time"),
        )
        self.dedup_keys = Table(
            f"{prefix}dedup_keys",
            meta,
            Column("key", String(256), primary_key=True),
            Column("job_id", String(64), nullable=False),
        )
        self.paused = Table(
            f"{prefix}paused_queues",
            meta,
            Column("queue", String(128), primary_key=True),
            Column("pause_time", UtcDateTime, nullable=False),
        )
        self.replay_requests = Table(
            f"{prefix}replay_requests",
            meta,
            Column("request_id", String(256), primary_key=True),
            Column("count", Integer, nullable=False),
            Column("create_time", UtcDateTime, nullable=False),
        )
        self.purged = Table(
            f"{prefix}purged_jobs",
            meta,
            Column("id", String(64), primary_key=True),
            Column("purge_time", UtcDateTime, nullable=False),
        )
        self.workers = Table(
            f"{prefix}workers",
            meta,
            Column("session_id", String(64), primary_key=True),
            Column("gateway", String(256), nullable=False),
            Column("worker_id", String(256), nullable=False),
            Column("info", JSON, nullable=False),
            Column("seen_time", UtcDateTime, nullable=False),
            # Another gateway asked this stream to drain (DrainWorker).
            Column("drain", Boolean, nullable=False, default=False),
        )
        c = self.jobs.c
        stored_rank = c.attempt * 2 + case((c.state == PROCESSING, 0), else_=1)
        # Plain comparisons rather than NOT IN: executemany takes no expanding lists.
        unfinished = and_(*(c.state != name for name in TERMINAL))
        self.update: Update = (
            update(self.jobs)
            .where(
                c.id == bindparam("b_id"),
                unfinished,
                # A finish applies unless a newer attempt began meanwhile (its
                # lease was lost and another gateway took the job over).
                or_(
                    and_(bindparam("b_final", type_=Boolean), bindparam("b_attempt") >= c.attempt),
                    bindparam("b_rank") >= stored_rank,
                ),
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
        """Write a record's state unless it is finished or newer (see :func:`rank`)."""
        self.count_uncounted: Update = (
            update(self.jobs)
            .where(c.id == bindparam("b_id"))
            .values(uncounted=c.uncounted + bindparam("b_n"))
        )

    def effective_state(self, now: datetime) -> ColumnElement[str]:
        """The state a client sees: a delayed or failed job whose time came is pending.

        Nothing tells the gateway when the broker makes a delayed or backed-off
        message available again, so the stored state stays until the next
        delivery and reads correct it.
        """
        c = self.jobs.c
        due = and_(c.state.in_(["scheduled", "failed"]), c.schedule_time <= now)
        return case((due, PENDING), else_=c.state)


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
    return record_of_row(
        row,
        state=JobState[row["state"].upper()],
        create_time=row["create_time"].timestamp(),
        update_time=row["update_time"].timestamp(),
        schedule_time=optional_epoch(row["schedule_time"]),
        end_time=optional_epoch(row["end_time"]),
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
