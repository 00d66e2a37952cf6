"""What both clients share to operate queues: selectors, requests, and connected workers.

The twins' methods (``_sync_operations.py``, ``_async_operations.py``) only
send what is built here and convert what comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from uuid import uuid4

from jobwire.client._convert import to_datetime
from jobwire.client._errors import InvalidArgumentError
from jobwire.client._models import Job, JobState
from jobwire.client._serializers import Serializer, encode_payload
from jobwire.v1 import job_pb2
from jobwire.v1 import queue_service_pb2 as Q
from jobwire.v1 import worker_service_pb2 as W

#: What `retry_job` keeps when no new payload is given.
KEEP = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerInfo:
    """One worker stream connected to a gateway (what `list_workers` returns)."""

    worker_id: str
    session_id: str
    #: Address of the gateway the stream is connected to.
    gateway: str = ""
    host: str = ""
    pid: int = 0
    #: SDK and version the worker reported, e.g. "jobwire-worker-python/0.4.0".
    sdk: str = ""
    queues: tuple[str, ...] = ()
    #: Job types it handles; empty means all.
    job_types: tuple[str, ...] = ()
    #: Credits granted (most jobs it may hold at once).
    credits: int = 0
    #: Jobs delivered and not answered yet.
    in_flight: int = 0
    completed: int = 0
    failed: int = 0
    connect_time: datetime | None = None
    last_seen_time: datetime | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    #: Whether it was asked to drain.
    draining: bool = False

    @classmethod
    def from_proto(cls, proto: W.WorkerInfo) -> WorkerInfo:
        """Converts a `jobwire.v1.WorkerInfo`."""
        return cls(
            worker_id=proto.worker_id,
            session_id=proto.session_id,
            gateway=proto.gateway,
            host=proto.host,
            pid=proto.pid,
            sdk=proto.sdk,
            queues=tuple(proto.queues),
            job_types=tuple(proto.job_types),
            credits=proto.credits,
            in_flight=proto.in_flight,
            completed=proto.completed,
            failed=proto.failed,
            connect_time=(
                to_datetime(proto.connect_time) if proto.HasField("connect_time") else None
            ),
            last_seen_time=(
                to_datetime(proto.last_seen_time) if proto.HasField("last_seen_time") else None
            ),
            labels=dict(proto.labels),
            draining=proto.draining,
        )


def job_selector(
    *,
    queue: str | None,
    type: str | None,
    states: Iterable[JobState | str] | None,
    error_contains: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    ids: Iterable[Job | str] | None = None,
    attributes: Mapping[str, str] | None = None,
) -> Q.JobSelector:
    """The `jobwire.v1.JobSelector` of a bulk operation or a watch; None and empty match all.

    Raises:
        InvalidArgumentError: A time is naive, a state is unknown, or `ids` is one string.
    """
    selector = Q.JobSelector(
        queue=queue or "",
        type=type or "",
        error_contains=error_contains or "",
        states=[_state(state).to_proto() for state in states or ()],
        ids=_ids(ids),
        attributes=attributes,
    )
    for name, proto_field, value in (
        ("created_after", "create_time_after", created_after),
        ("created_before", "create_time_before", created_before),
    ):
        if value is None:
            continue
        if value.utcoffset() is None:
            raise InvalidArgumentError(
                f"`{name}` must be timezone-aware, e.g. datetime.now(UTC)",
                metadata={"field": name},
            )
        getattr(selector, proto_field).FromDatetime(value)
    return selector


def _ids(ids: Iterable[Job | str] | None) -> list[str]:
    if isinstance(ids, str | bytes):
        # A string is iterable too: its characters would be the "ids".
        raise InvalidArgumentError(
            "`ids` takes a list of job ids (or jobs), not one string: ids=[job_id]",
            metadata={"field": "ids"},
        )
    return [job.id if isinstance(job, Job) else job for job in ids or ()]


def _state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        names = ", ".join(s.value for s in JobState)
        raise InvalidArgumentError(
            f"unknown job state {state!r}; use one of {names}", metadata={"field": "states"}
        ) from None


def retry_request(
    job_or_id: Job | str, payload: object, serializer: Serializer, max_retries: int | None
) -> Q.RetryJobRequest:
    """The `RetryJob` request; `payload` is `KEEP` to keep the job's."""
    request = Q.RetryJobRequest(id=job_or_id.id if isinstance(job_or_id, Job) else job_or_id)
    if payload is not KEEP:
        request.payload, _ = encode_payload(payload, serializer, None)
    if max_retries is not None:
        request.max_retries = max_retries
    return request


def retry_jobs_request(request_id: str | None, selector: Q.JobSelector) -> Q.RetryJobsRequest:
    """The `RetryJobs` request, with a new idempotency key unless one is given."""
    return Q.RetryJobsRequest(selector=selector, request_id=request_id or uuid4().hex)


def purge_request(
    selector: Q.JobSelector, *, all: bool, include_processing: bool, dry_run: bool
) -> Q.PurgeJobsRequest:
    """The `PurgeJobs` request."""
    return Q.PurgeJobsRequest(
        selector=selector, all=all, include_processing=include_processing, validate_only=dry_run
    )


def watch_jobs_request(
    selector: Q.JobSelector, *, only_new: bool, full: bool
) -> Q.WatchJobsRequest:
    """The `WatchJobs` request by selector."""
    view = job_pb2.JOB_VIEW_FULL if full else job_pb2.JOB_VIEW_BASIC
    return Q.WatchJobsRequest(selector=selector, only_new=only_new, view=view)
