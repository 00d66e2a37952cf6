"""Python views of the jobwire.v1 messages a producer sees: a job and its parts.

Lists of jobs are in :mod:`._job_lists`, queue counts in :mod:`._queue_stats`;
models stay plain data (rendering, in :mod:`._display`, depends on them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from jobwire.client._convert import to_datetime
from jobwire.client._rich import Rich
from jobwire.client._serializers import JsonSerializer, Serializer, decode_payload
from jobwire.v1 import job_pb2

_JSON = JsonSerializer()


class JobState(StrEnum):
    """Where a job is in its lifecycle."""

    #: Waiting in its queue for a worker.
    PENDING = "pending"
    #: Held until its schedule time (a delay, a one-time schedule or a retry backoff).
    SCHEDULED = "scheduled"
    #: Leased to a worker that is running its handler.
    PROCESSING = "processing"
    #: A handler finished it; its result is available.
    COMPLETED = "completed"
    #: An attempt failed and a retry is scheduled.
    FAILED = "failed"
    #: Retries exhausted or the failure was not retryable.
    DEAD = "dead"
    #: Cancelled before it completed.
    CANCELLED = "cancelled"

    @classmethod
    def from_proto(cls, value: job_pb2.Job.State.ValueType) -> JobState:
        """Converts a `jobwire.v1.Job.State`.

        Raises:
            ValueError: `value` is STATE_UNSPECIFIED or unknown.
        """
        state = _STATES.get(value)
        if state is not None:
            return state
        if value == job_pb2.Job.STATE_UNSPECIFIED:
            raise ValueError("STATE_UNSPECIFIED is not a job state")
        return cls[job_pb2.Job.State.Name(value).removeprefix("STATE_")]

    def to_proto(self) -> job_pb2.Job.State.ValueType:
        """Converts to a `jobwire.v1.Job.State`."""
        return job_pb2.Job.State.Value(f"STATE_{self.name}")

    @property
    def is_terminal(self) -> bool:
        """Whether the job can no longer change: completed, dead or cancelled."""
        return self in _TERMINAL


_TERMINAL = frozenset({JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED})
# `from_proto` runs for every job a client returns; a lookup beats going by name.
_STATES = {state.to_proto(): state for state in JobState}


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailure:
    """Why an attempt failed."""

    message: str
    #: Error class or code, e.g. "ValueError" or "TIMEOUT".
    type: str = ""
    #: Extra detail such as a stack trace.
    details: str = ""
    retryable: bool = True
    attempt: int = 0
    time: datetime | None = None
    #: Worker that ran the attempt, if one did.
    worker_id: str = ""

    @classmethod
    def from_proto(cls, proto: job_pb2.JobFailure) -> JobFailure:
        """Converts a `jobwire.v1.JobFailure`."""
        return cls(
            message=proto.message,
            type=proto.type,
            details=proto.details,
            retryable=proto.retryable,
            attempt=proto.attempt,
            time=to_datetime(proto.time) if proto.HasField("time") else None,
            worker_id=proto.worker_id,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class JobProgress:
    """Progress a handler reported."""

    current: float
    #: Units in all; 0 when unknown.
    total: float = 0.0
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """`current / total`, or None when the total is unknown."""
        return self.current / self.total if self.total else None

    @classmethod
    def from_proto(cls, proto: job_pb2.JobProgress) -> JobProgress:
        """Converts a `jobwire.v1.JobProgress`."""
        return cls(current=proto.current, total=proto.total, message=proto.message)


class JobWaiter(Protocol):
    """What a `Job` needs from the client that returned it to wait for its result."""

    def wait(self, job_or_id: Job | str, *, timeout: float | timedelta | None = None) -> Any:
        """Waits for the job's result (or returns an awaitable of it)."""
        ...


class _Origin:
    """Where a job came from: the serializer that decodes it and the client it waits with."""

    __slots__ = ("client", "serializer")

    def __init__(self, serializer: Serializer, client: JobWaiter | None = None) -> None:
        self.serializer = serializer
        self.client = client

    # Not a dataclass, so `dataclasses.asdict(job)` does not descend into it. A client
    # is a connection handle, not a value: copies of a job share it, and a pickled job
    # keeps only what decodes it.
    def __deepcopy__(self, memo: dict[int, Any]) -> _Origin:
        return self

    def __reduce__(self) -> tuple[type[_Origin], tuple[Serializer]]:
        return (_Origin, (self.serializer,))


_JSON_ORIGIN = _Origin(_JSON)


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Job(Rich):
    """A job as the gateway stored it.

    `payload` and `result` are decoded with the client's serializer when the job's
    `content_type` is the serializer's; otherwise they are the raw bytes. Lists and
    watches return jobs without payload and result (`raw_payload` is empty).

    A job returned by a client remembers it, so it can wait for itself: `job.wait()`
    with a `Client`, `await job.wait()` with an `AsyncClient`.
    """

    id: str
    type: str
    queue: str = "default"
    state: JobState = JobState.PENDING
    #: Deliveries to a worker so far (1 on the first run).
    attempt: int = 0
    max_retries: int = 3
    #: Longest one attempt may run; None means the gateway's default.
    timeout: timedelta | None = None
    deduplication_key: str | None = None
    content_type: str = ""
    raw_payload: bytes = b""
    raw_result: bytes | None = None
    #: Media type of `raw_result` as the worker reported it; empty means `content_type`.
    result_content_type: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)
    create_time: datetime | None = None
    #: Earliest time the job may run (delayed, scheduled and retrying jobs).
    schedule_time: datetime | None = None
    update_time: datetime | None = None
    end_time: datetime | None = None
    last_error: JobFailure | None = None
    progress: JobProgress | None = None
    worker_id: str | None = None
    #: Name of the schedule that produced the job, if any.
    schedule: str | None = None
    #: 0 to 9, higher runs first.
    priority: int = 5
    #: Every failed attempt's error, oldest first (the last 20; `get_job` only).
    errors: tuple[JobFailure, ...] = ()
    #: The job's group for flow control, if any.
    concurrency_key: str | None = None
    #: Why a pending job is not delivered yet, when a limit holds it (`get_job` only),
    #: e.g. "concurrency key customer-7 (2 of 2 processing)".
    waiting_reason: str | None = None
    _origin: _Origin = field(default=_JSON_ORIGIN, compare=False)

    @classmethod
    def from_proto(
        cls,
        proto: job_pb2.Job,
        *,
        serializer: Serializer = _JSON,
        client: JobWaiter | None = None,
    ) -> Job:
        """Converts a `jobwire.v1.Job`.

        Args:
            proto: The message.
            serializer: Decodes `payload` and `result`.
            client: Client that `wait` uses; the clients pass themselves.
        """
        return cls._from_proto(proto, serializer, client, None)

    @classmethod
    def _from_proto(
        cls,
        proto: job_pb2.Job,
        serializer: Serializer,
        client: JobWaiter | None,
        raw_payload: bytes | None,
    ) -> Job:
        """`from_proto`, with `raw_payload` instead of the message's when not None."""
        return cls(
            id=proto.id,
            type=proto.type,
            queue=proto.queue,
            state=JobState.from_proto(proto.state),
            attempt=proto.attempt,
            max_retries=proto.max_retries,
            timeout=proto.timeout.ToTimedelta() if proto.HasField("timeout") else None,
            deduplication_key=proto.deduplication_key or None,
            content_type=proto.content_type,
            raw_payload=proto.payload if raw_payload is None else raw_payload,
            raw_result=proto.result if proto.HasField("result") else None,
            result_content_type=proto.result_content_type,
            attributes=dict(proto.attributes) if proto.attributes else {},
            create_time=to_datetime(proto.create_time) if proto.HasField("create_time") else None,
            schedule_time=(
                to_datetime(proto.schedule_time) if proto.HasField("schedule_time") else None
            ),
            update_time=to_datetime(proto.update_time) if proto.HasField("update_time") else None,
            end_time=to_datetime(proto.end_time) if proto.HasField("end_time") else None,
            last_error=(
                JobFailure.from_proto(proto.last_error) if proto.HasField("last_error") else None
            ),
            progress=JobProgress.from_proto(proto.progress) if proto.HasField("progress") else None,
            worker_id=proto.worker_id or None,
            schedule=proto.schedule or None,
            priority=proto.priority,
            errors=tuple(map(JobFailure.from_proto, proto.errors)),
            concurrency_key=proto.concurrency_key or None,
            waiting_reason=proto.waiting_reason or None,
            _origin=_Origin(serializer, client),
        )

    @property
    def payload(self) -> Any:
        """The payload, decoded (see the class docstring)."""
        return decode_payload(self.raw_payload, self.content_type, self._origin.serializer)

    @property
    def result(self) -> Any:
        """What the handler returned, decoded like the payload; None until completed."""
        if self.raw_result is None:
            return None
        content_type = self.result_content_type or self.content_type
        return decode_payload(self.raw_result, content_type, self._origin.serializer)

    def wait(self, timeout: float | timedelta | None = None) -> Any:
        """Waits until the job finishes and returns its result.

        With a `Client` this blocks and returns the result; with an `AsyncClient`
        it returns an awaitable: `await job.wait()`. See `Client.wait`.

        Args:
            timeout: Longest to wait; None waits as long as it takes.

        Raises:
            RuntimeError: The job was not returned by a client.
        """
        client = self._origin.client
        if client is None:
            raise RuntimeError("this Job was not returned by a client; use client.wait(job)")
        return client.wait(self, timeout=timeout)

    def __repr__(self) -> str:
        return (
            f"Job(id={self.id!r}, type={self.type!r}, queue={self.queue!r}, "
            f"state={self.state.value}, attempt={self.attempt})"
        )
