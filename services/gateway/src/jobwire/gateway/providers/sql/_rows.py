"""Conversions between rows of ``<prefix>jobs`` and :class:`JobRecord` objects."""

from __future__ import annotations

from typing import Any

from jobwire.gateway._db import error_json, record_of_row
from jobwire.gateway._models import JobRecord, JobState


def insert_row(record: JobRecord, request_id: str, gateway_id: str | None = None) -> dict[str, Any]:
    """The row of a new job (``gateway_id``: the gateway it is leased through, if it is)."""
    return {
        "id": record.id,
        "queue": record.queue,
        "type": record.type,
        "priority": record.priority,
        "state": record.state.value,
        "run_at": record.schedule_time
        if record.state is JobState.SCHEDULED and record.schedule_time is not None
        else record.create_time,
        "payload": record.payload,
        "content_type": record.content_type,
        "attributes": record.attributes,
        "max_retries": record.max_retries,
        "timeout": record.timeout,
        "deduplication_key": record.deduplication_key or None,
        "request_id": request_id or None,
        "schedule": record.schedule,
        "attempt": record.attempt,
        "create_time": record.create_time,
        "update_time": record.update_time,
        "schedule_time": record.schedule_time,
        "end_time": record.end_time,
        "worker_id": record.worker_id,
        "gateway_id": gateway_id,
        "last_error": error_json(record),
        "result": record.result,
        "result_content_type": record.result_content_type,
        "progress": None,
        "concurrency_key": record.concurrency_key,
    }


def record_of(row: Any, now: float | None = None) -> JobRecord:
    """The record of a row; with ``now``, as a client sees it then.

    A waiting job whose ``run_at`` came is pending, changed at its ``run_at``
    (what the memory provider's timer records; watchers compare update times).
    """
    state = JobState(row["state"])
    update_time = row["update_time"]
    if now is not None and state in (JobState.SCHEDULED, JobState.FAILED) and row["run_at"] <= now:
        state = JobState.PENDING
        update_time = max(update_time, row["run_at"])
    return record_of_row(
        row,
        state=state,
        create_time=row["create_time"],
        update_time=update_time,
        schedule_time=row["schedule_time"],
        end_time=row["end_time"],
        priority=row["priority"],
        concurrency_key=row["concurrency_key"],
    )
