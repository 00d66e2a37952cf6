"""A job as a Redis hash, and back.

The fields Lua scripts read or change are plain hash fields (state,
attempt, queue, type, owner gateway, ...); what never changes after the
enqueue (payload, content type, attributes, retries, timeout, schedule) is
one serialized ``jobwire.v1.Job`` in ``body`` (the concurrency key is also the
field ``k``, which the scripts route by). Times are epoch seconds as
text (``repr`` of the float: exact both ways).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobwire.gateway._models import Failure, JobRecord, JobState, set_time
from jobwire.v1 import job_pb2


def body(job: JobRecord) -> bytes:
    """The part of a job that never changes, serialized."""
    msg = job_pb2.Job(
        payload=job.payload,
        content_type=job.content_type,
        attributes=job.attributes,
        max_retries=job.max_retries,
        schedule=job.schedule,
        concurrency_key=job.concurrency_key,
    )
    if job.timeout is not None:
        set_time(msg.timeout, job.timeout)
    return msg.SerializeToString()


def failure(error: Failure | None) -> bytes:
    """A failure serialized (``b""`` for none)."""
    return b"" if error is None else error.to_proto().SerializeToString()


def errors(job: JobRecord) -> bytes:
    """Every attempt's error a job keeps (``JobRecord.errors``), serialized."""
    msg = job_pb2.Job()
    for item in job.errors:
        item.fill_proto(msg.errors.add())
    return msg.SerializeToString()


def seconds(value: float | None) -> str:
    """A time as hash text; ``""`` for none."""
    return "" if value is None else repr(value)


def millis(value: float) -> int:
    """A time as the whole milliseconds sorted sets are scored by (rounded up: never early)."""
    return -int(-value * 1000 // 1)


def pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """An ``HGETALL`` reply (a flat list, as scripts return it) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


_STATES = {str(state.value).encode(): state for state in JobState}
"""A state as the hash holds it, to the enum (``JobState(int(...))`` costs more)."""

FIELDS = (
    "id", "q", "t", "dk", "body", "s", "a", "c", "u", "p",
    "st", "e", "err", "errs", "r", "rct", "pg", "w",
)  # fmt: skip
"""The hash fields a job is read back from, in the order ``lua/lib.lua``'s FIELDS
lists them (``HMGET``: values only, no names to pair up)."""


def from_values(values: Sequence[Any]) -> JobRecord | None:
    """The job of an ``HMGET`` of :data:`FIELDS`; None if there is no such job."""
    (
        job_id, queue, job_type, key, body, state, attempt, created, updated, priority,
        scheduled, ended, error, history, result, result_type, progress, worker,
    ) = values  # fmt: skip
    if job_id is None:
        return None
    # Every job a claim takes goes through here: the common case (no error,
    # result, progress, attributes or timeout) skips what it does not need.
    msg = job_pb2.Job.FromString(body)
    return JobRecord(
        id=job_id.decode(),
        queue=queue.decode(),
        type=job_type.decode(),
        payload=msg.payload,
        content_type=msg.content_type,
        attributes=dict(msg.attributes) if msg.attributes else {},
        max_retries=msg.max_retries,
        timeout=msg.timeout.ToNanoseconds() / 1e9 if msg.HasField("timeout") else None,
        deduplication_key=key.decode(),
        create_time=float(created),
        state=_STATES[state],
        schedule_time=float(scheduled) if scheduled else None,
        update_time=float(updated),
        end_time=float(ended) if ended else None,
        attempt=int(attempt),
        last_error=_failure(job_pb2.JobFailure.FromString(error)) if error else None,
        result=result,
        result_content_type=result_type.decode() if result_type else "",
        progress=job_pb2.JobProgress.FromString(progress) if progress else None,
        worker_id=worker.decode() if worker else "",
        schedule=msg.schedule,
        priority=int(priority),
        concurrency_key=msg.concurrency_key,
        errors=tuple(map(_failure, job_pb2.Job.FromString(history).errors)) if history else (),
    )


def job_of(values: Sequence[Any]) -> JobRecord:
    """The job of an ``HMGET`` of :data:`FIELDS` a script returned for a job it holds."""
    job = from_values(values)
    assert job is not None, "a script returned a job without its hash"
    return job


def _failure(msg: job_pb2.JobFailure) -> Failure:
    return Failure(
        msg.message,
        msg.type,
        msg.details,
        msg.retryable,
        msg.attempt,
        msg.time.ToNanoseconds() / 1e9,
        msg.worker_id,
    )
