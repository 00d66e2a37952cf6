"""The gateway's job record and its conversion to the ``jobwire.v1.Job`` message.

Providers keep :class:`JobRecord` objects rather than protobuf messages: plain
slotted attributes are cheaper to update on every state change, and the proto
is built once, when the job leaves the gateway.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from enum import IntEnum

from google.protobuf import duration_pb2, timestamp_pb2

from jobwire.v1 import job_pb2


class JobState(IntEnum):
    """``jobwire.v1.Job.State``, as a Python enum."""

    PENDING = job_pb2.Job.STATE_PENDING
    SCHEDULED = job_pb2.Job.STATE_SCHEDULED
    PROCESSING = job_pb2.Job.STATE_PROCESSING
    COMPLETED = job_pb2.Job.STATE_COMPLETED
    FAILED = job_pb2.Job.STATE_FAILED
    DEAD = job_pb2.Job.STATE_DEAD
    CANCELLED = job_pb2.Job.STATE_CANCELLED

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})


@dataclass(slots=True)
class Failure:
    """Why an attempt failed (``jobwire.v1.JobFailure``)."""

    message: str
    type: str = ""
    details: str = ""
    retryable: bool = True
    attempt: int = 0
    time: float = field(default_factory=time.time)

    @classmethod
    def from_proto(cls, msg: job_pb2.JobFailure, *, attempt: int, retryable: bool) -> Failure:
        """Build from a worker's nack, stamping attempt and time on the gateway."""
        return cls(msg.message, msg.type, msg.details, retryable, attempt)

    def to_proto(self) -> job_pb2.JobFailure:
        """Return the message form."""
        return job_pb2.JobFailure(
            message=self.message,
            type=self.type,
            details=self.details,
            retryable=self.retryable,
            attempt=self.attempt,
            time=timestamp(self.time),
        )


@dataclass(slots=True)
class NewJob:
    """A validated enqueue request. Times are epoch seconds."""

    queue: str
    type: str
    payload: bytes
    content_type: str
    attributes: dict[str, str]
    max_retries: int
    timeout: float | None
    deduplication_key: str
    schedule_time: float | None
    request_id: str
    schedule: str = ""
    id: str = ""
    """Preassigned id (jobs the scheduler held keep theirs); empty means a new one."""


@dataclass(slots=True, eq=False)
class JobRecord:
    """A job as a provider stores it. Times are epoch seconds."""

    id: str
    queue: str
    type: str
    payload: bytes
    content_type: str
    attributes: dict[str, str]
    max_retries: int
    timeout: float | None
    deduplication_key: str
    create_time: float
    state: JobState
    schedule_time: float | None = None
    update_time: float = 0.0
    end_time: float | None = None
    attempt: int = 0
    last_error: Failure | None = None
    result: bytes | None = None
    result_content_type: str = ""
    progress: job_pb2.JobProgress | None = None
    worker_id: str = ""
    schedule: str = ""

    @classmethod
    def create(cls, new: NewJob, now: float) -> JobRecord:
        """Make the record of a newly accepted job."""
        delayed = new.schedule_time is not None and new.schedule_time > now
        return cls(
            id=new.id or uuid.uuid4().hex,
            queue=new.queue,
            type=new.type,
            payload=new.payload,
            content_type=new.content_type,
            attributes=new.attributes,
            max_retries=new.max_retries,
            timeout=new.timeout,
            deduplication_key=new.deduplication_key,
            create_time=now,
            update_time=now,
            state=JobState.SCHEDULED if delayed else JobState.PENDING,
            schedule_time=new.schedule_time,
            schedule=new.schedule,
        )

    def to_proto(self, *, full: bool = True) -> job_pb2.Job:
        """Return the message form; ``full=False`` omits payload and result."""
        msg = job_pb2.Job(
            id=self.id,
            queue=self.queue,
            type=self.type,
            content_type=self.content_type,
            attributes=self.attributes,
            state=self.state.value,
            attempt=self.attempt,
            max_retries=self.max_retries,
            deduplication_key=self.deduplication_key,
            create_time=timestamp(self.create_time),
            update_time=timestamp(self.update_time),
            worker_id=self.worker_id,
            schedule=self.schedule,
            result_content_type=self.result_content_type,
        )
        if full:
            msg.payload = self.payload
            if self.result is not None:
                msg.result = self.result
        if self.timeout is not None:
            msg.timeout.CopyFrom(duration(self.timeout))
        if self.schedule_time is not None:
            msg.schedule_time.CopyFrom(timestamp(self.schedule_time))
        if self.end_time is not None:
            msg.end_time.CopyFrom(timestamp(self.end_time))
        if self.last_error is not None:
            msg.last_error.CopyFrom(self.last_error.to_proto())
        if self.progress is not None:
            msg.progress.CopyFrom(self.progress)
        return msg


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """Return the Timestamp of epoch ``seconds``."""
    whole = int(seconds)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


def duration(seconds: float) -> duration_pb2.Duration:
    """Return the Duration of ``seconds``."""
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
