"""The gateway's job record and its conversion to the ``jobwire.v1.Job`` message.

Providers keep :class:`JobRecord` objects rather than protobuf messages: plain
slotted attributes are cheaper to update on every state change, and the proto
is built once, when the job leaves the gateway. It is written in place into
the message that carries it (``fill_proto``): building a ``Job`` and then
passing it to a parent message copies it again, and on the delivery path that
copy cost as much as the build.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Self

from google.protobuf import duration_pb2, timestamp_pb2

from jobwire.v1 import job_pb2

DEFAULT_PRIORITY = 5
"""Priority of a job enqueued without one (0 to 9, higher first)."""
MAX_PRIORITY = 9
"""The highest priority a job may have (the lowest is 0)."""
MAX_ERRORS = 20
"""Errors of earlier attempts a job keeps."""


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
REPLAYABLE = frozenset({JobState.DEAD, JobState.FAILED, JobState.CANCELLED})
"""States of the jobs ``RetryJob`` may replay."""


def states_text(states: frozenset[JobState]) -> str:
    """``"dead, failed and cancelled"``: the states named in a message, in a fixed order."""
    names = [
        s.name.lower() for s in (JobState.DEAD, JobState.FAILED, JobState.CANCELLED) if s in states
    ]
    return " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


@dataclass(slots=True)
class Failure:
    """Why an attempt failed (``jobwire.v1.JobFailure``)."""

    message: str
    type: str = ""
    details: str = ""
    retryable: bool = True
    attempt: int = 0
    time: float = field(default_factory=time.time)
    worker_id: str = ""

    @classmethod
    def from_proto(
        cls, msg: job_pb2.JobFailure, *, attempt: int, retryable: bool, worker_id: str = ""
    ) -> Failure:
        """Build from a worker's nack, stamping attempt, time and worker on the gateway."""
        return cls(msg.message, msg.type, msg.details, retryable, attempt, worker_id=worker_id)

    def to_proto(self) -> job_pb2.JobFailure:
        """Return the message form."""
        msg = job_pb2.JobFailure()
        self.fill_proto(msg)
        return msg

    def fill_proto(self, msg: job_pb2.JobFailure) -> None:
        """Write the message form into ``msg``, an empty ``JobFailure``."""
        msg.message = self.message
        msg.type = self.type
        msg.details = self.details
        msg.retryable = self.retryable
        msg.attempt = self.attempt
        set_time(msg.time, self.time)
        if self.worker_id:
            msg.worker_id = self.worker_id


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How an attempt ended, as the lease state machine decided it."""

    state: JobState
    """COMPLETED; FAILED (a retry at ``run_at``); DEAD; or PENDING (the attempt
    was lost with its worker or lease: available again at once)."""
    time: float
    failure: Failure | None = None
    result: bytes | None = None
    result_content_type: str = ""
    run_at: float | None = None


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
    priority: int = DEFAULT_PRIORITY
    concurrency_key: str = ""


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
    priority: int = DEFAULT_PRIORITY
    errors: tuple[Failure, ...] = ()
    """Every failed attempt's error, oldest first, at most :data:`MAX_ERRORS`."""
    concurrency_key: str = ""
    """The job's group for flow control (``max_concurrency_per_key``, fair dispatch)."""

    @classmethod
    def create(cls, new: NewJob, now: float) -> Self:
        """Make the record of a newly accepted job."""
        delayed = new.schedule_time is not None and new.schedule_time > now
        return cls(
            id=new.id or uuid.uuid4().hex,
            # Each request brings its own copies of these few distinct names: one
            # shared copy saves about 170 bytes per stored job.
            queue=sys.intern(new.queue),
            type=sys.intern(new.type),
            payload=new.payload,
            content_type=sys.intern(new.content_type),
            attributes=new.attributes,
            max_retries=new.max_retries,
            timeout=new.timeout,
            deduplication_key=new.deduplication_key,
            create_time=now,
            update_time=now,
            state=JobState.SCHEDULED if delayed else JobState.PENDING,
            schedule_time=new.schedule_time,
            schedule=new.schedule,
            priority=new.priority,
            concurrency_key=new.concurrency_key,
        )

    def begin_attempt(self, attempt: int, worker_id: str, now: float) -> None:
        """Record that attempt number ``attempt`` was leased to ``worker_id``."""
        self.attempt = attempt
        self.worker_id = worker_id
        self.schedule_time = None
        self.state = JobState.PROCESSING
        self.update_time = now

    def end_attempt(self, end: AttemptEnd) -> None:
        """Record how the current attempt ended."""
        self.state = end.state
        self.update_time = end.time
        if end.failure is not None:
            self.last_error = end.failure
            self.errors = (*self.errors[-(MAX_ERRORS - 1) :], end.failure)
        if end.state is JobState.COMPLETED:
            self.result = end.result
            self.result_content_type = end.result_content_type
        elif end.state is JobState.FAILED:
            self.schedule_time = end.run_at
        if end.state in _TERMINAL:  # not .is_terminal: a call per job on the hot path
            self.end_time = end.time

    def replay(self, now: float, payload: bytes | None, max_retries: int | None) -> None:
        """Make a finished or failed job pending again, as a new series of attempts.

        Its id, errors and last error stay; ``payload`` and ``max_retries``
        replace the job's when given.
        """
        self.state = JobState.PENDING
        self.attempt = 0
        self.update_time = now
        self.schedule_time = None
        self.end_time = None
        self.result = None
        self.result_content_type = ""
        self.progress = None
        self.worker_id = ""
        if payload is not None:
            self.payload = payload
        if max_retries is not None:
            self.max_retries = max_retries

    def cancel(self, message: str, now: float) -> None:
        """Record a cancellation; ``message`` says why."""
        self.last_error = Failure(message, "CANCELLED", retryable=False, attempt=self.attempt)
        self.state = JobState.CANCELLED
        self.update_time = now
        self.end_time = now

    def to_proto(self, *, full: bool = True) -> job_pb2.Job:
        """Return the message form; ``full=False`` omits payload and result."""
        msg = job_pb2.Job()
        self.fill_proto(msg, full=full)
        return msg

    def fill_proto(self, msg: job_pb2.Job, *, full: bool = True) -> None:
        """Write the message form into ``msg``, an empty ``Job``; see :meth:`to_proto`.

        Use it for a job inside a larger message (``response.job``, a delivery
        item): writing in place saves building a ``Job`` and copying it there.
        """
        # Empty strings and maps are proto3 defaults: leaving them unset
        # serialises the same and saves the assignments.
        msg.id = self.id
        msg.queue = self.queue
        msg.type = self.type
        if self.content_type:
            msg.content_type = self.content_type
        if self.attributes:
            msg.attributes.update(self.attributes)
        msg.state = self.state.value
        msg.attempt = self.attempt
        msg.max_retries = self.max_retries
        msg.priority = self.priority
        if self.deduplication_key:
            msg.deduplication_key = self.deduplication_key
        if self.concurrency_key:
            msg.concurrency_key = self.concurrency_key
        set_time(msg.create_time, self.create_time)
        set_time(msg.update_time, self.update_time)
        if self.worker_id:
            msg.worker_id = self.worker_id
        if self.schedule:
            msg.schedule = self.schedule
        if self.result_content_type:
            msg.result_content_type = self.result_content_type
        if full:
            msg.payload = self.payload
            if self.result is not None:
                msg.result = self.result
        self._fill_times_and_errors(msg)

    def _fill_times_and_errors(self, msg: job_pb2.Job) -> None:
        """The optional times, errors and progress of :meth:`fill_proto`."""
        if self.timeout is not None:
            set_time(msg.timeout, self.timeout)
        if self.schedule_time is not None:
            set_time(msg.schedule_time, self.schedule_time)
        if self.end_time is not None:
            set_time(msg.end_time, self.end_time)
        if self.last_error is not None:
            self.last_error.fill_proto(msg.last_error)
        for failure in self.errors:
            failure.fill_proto(msg.errors.add())
        if self.progress is not None:
            msg.progress.CopyFrom(self.progress)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs ``list`` returns; empty fields match everything."""

    queue: str = ""
    type: str = ""
    states: frozenset[JobState] = frozenset()
    id_prefix: str = ""
    """Only jobs whose id starts with this (resolving a shortened id)."""

    def matches(self, job: JobRecord) -> bool:
        """Whether ``job`` passes the filter."""
        return (
            job.id.startswith(self.id_prefix)
            and (not self.queue or job.queue == self.queue)
            and (not self.type or job.type == self.type)
            and (not self.states or job.state in self.states)
        )


def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    """Return the Timestamp of epoch ``seconds``."""
    whole = int(seconds)
    return timestamp_pb2.Timestamp(seconds=whole, nanos=int((seconds - whole) * 1e9))


def duration(seconds: float) -> duration_pb2.Duration:
    """Return the Duration of ``seconds``."""
    whole = int(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))


def set_time(field: timestamp_pb2.Timestamp | duration_pb2.Duration, seconds: float) -> None:
    """Set a Timestamp (epoch ``seconds``) or Duration field in place, as ``timestamp()``."""
    whole = int(seconds)
    field.seconds = whole
    field.nanos = int((seconds - whole) * 1e9)
