"""Every check of what clients send, in one place: enqueues, filters, worker streams.

Errors are ``InvalidArgumentError`` naming the field (with the request's
index in a batch, ``requests[3].type``) and what is accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from google.protobuf import duration_pb2

from jobwire.gateway._config import ServerSettings
from jobwire.gateway._config_types import QUEUE_NAME
from jobwire.gateway._errors import InvalidArgumentError, PayloadTooLargeError
from jobwire.gateway._filters import MAX_SELECTED_IDS, JobSelector
from jobwire.gateway._limits import check_key
from jobwire.gateway._models import DEFAULT_PRIORITY, MAX_PRIORITY, JobFilter, JobState, NewJob
from jobwire.gateway.providers import Consumer, Revocation
from jobwire.v1 import job_pb2, queue_service_pb2, worker_service_pb2

DEFAULT_QUEUE = "default"
DEFAULT_MAX_RETRIES = 3
DEFAULT_PAGE_SIZE = 100
MAX_TYPE_LENGTH = 256
MAX_KEY_LENGTH = 256
MAX_ATTRIBUTE_BYTES = 4096
MAX_RETRIES_LIMIT = 100
# Far enough for any real schedule; beyond it a time is almost surely a unit mistake.
MAX_SCHEDULE_AHEAD = 10 * 365 * 86400.0
MAX_TIMEOUT = 7 * 86400.0
MAX_QUEUES = 64
MAX_JOB_TYPES = 1024
_Invalid = Callable[[str, str], InvalidArgumentError]


def validate_queue_name(name: str, field: str) -> str:
    """Return ``name`` (or the default queue when empty) if it is a valid queue name."""
    if not name:
        return DEFAULT_QUEUE
    if not QUEUE_NAME.match(name):
        raise InvalidArgumentError(
            field,
            f"invalid queue name {name[:64]!r}: use 1-128 letters, digits, '.', '_', ':' or '-'",
        )
    return name


def require_id(job_id: str, field: str = "id") -> str:
    """Return ``job_id`` if it can be a job id."""
    if not job_id:
        raise InvalidArgumentError(field, "is required")
    if len(job_id) > MAX_KEY_LENGTH:
        raise InvalidArgumentError(field, "is too long to be a job id")
    return job_id


def job_state(value: int, field: str) -> JobState:
    """Return the ``JobState`` of a ``Job.State`` number."""
    try:
        return JobState(value)
    except ValueError:
        names = ", ".join(job_pb2.Job.State.keys()[1:])
        raise InvalidArgumentError(field, f"unknown state {value}; use one of {names}") from None


def priority(value: int, field: str) -> int:
    """Return ``value`` if it is a priority (0 to 9)."""
    if not 0 <= value <= MAX_PRIORITY:
        raise InvalidArgumentError(
            field, f"must be 0 to {MAX_PRIORITY} (higher runs first; default 5), got {value}"
        )
    return value


def job_selector(msg: queue_service_pb2.JobSelector, field: str = "selector") -> JobSelector:
    """The selector of a bulk operation (``RetryJobs``, ``PurgeJobs``) or a ``WatchJobs``."""
    after = _time(msg, "create_time_after", field)
    before = _time(msg, "create_time_before", field)
    if after is not None and before is not None and after >= before:
        raise InvalidArgumentError(
            f"{field}.create_time_after", "must be before selector.create_time_before"
        )
    if len(msg.type) > MAX_TYPE_LENGTH or len(msg.error_contains) > 1024:
        raise InvalidArgumentError(field, "type or error_contains too long")
    if len(msg.ids) > MAX_SELECTED_IDS:
        raise InvalidArgumentError(
            f"{field}.ids",
            f"names {len(msg.ids)} jobs; at most {MAX_SELECTED_IDS} per call (split the ids,"
            " or select by queue, type, state, error or time instead)",
        )
    if sum(len(k) + len(v) for k, v in msg.attributes.items()) > MAX_ATTRIBUTE_BYTES:
        raise InvalidArgumentError(
            f"{field}.attributes", f"keys and values total at most {MAX_ATTRIBUTE_BYTES} bytes"
        )
    if "" in msg.attributes:
        raise InvalidArgumentError(f"{field}.attributes", "a key is empty: name the attribute")
    return JobSelector(
        queue=validate_queue_name(msg.queue, f"{field}.queue") if msg.queue else "",
        type=msg.type,
        states=frozenset(job_state(s, f"{field}.states") for s in msg.states),
        error_contains=msg.error_contains,
        created_after=after,
        created_before=before,
        ids=frozenset(
            _selected_id(job_id, f"{field}.ids[{n}]") for n, job_id in enumerate(msg.ids)
        ),
        attributes=tuple(sorted(msg.attributes.items())),
    )


def watch_selector(msg: queue_service_pb2.JobSelector) -> JobSelector:
    """The selector of a ``WatchJobs``: a bulk operation's, without states or error text."""
    for name in ("states", "error_contains"):
        if getattr(msg, name):
            raise InvalidArgumentError(
                f"selector.{name}",
                "is not accepted by WatchJobs: a watched job goes through every state; select"
                " by queue, type, ids, creation time or attributes",
            )
    return job_selector(msg)


def _selected_id(job_id: str, field: str) -> str:
    if not job_id:
        raise InvalidArgumentError(field, "is empty: give full job ids")
    return require_id(job_id, field)


def _time(
    msg: queue_service_pb2.JobSelector,
    name: Literal["create_time_after", "create_time_before"],
    field: str,
) -> float | None:
    if not msg.HasField(name):
        return None
    value = getattr(msg, name)
    if not 0 <= value.nanos < 1_000_000_000 or not 0 <= value.seconds <= 253402300799:
        raise InvalidArgumentError(f"{field}.{name}", "is not a valid time (years 1970-9999)")
    return float(value.seconds + value.nanos / 1e9)


def _ignore(revocation: Revocation) -> None:
    pass


class Validator:
    """Checks requests against the ``[server]`` limits."""

    def __init__(self, settings: ServerSettings) -> None:
        self._settings = settings
        default_timeout = settings.default_job_timeout
        self._default_timeout = default_timeout.total_seconds() if default_timeout else None

    def batch_size(self, size: int, *, batch: bool) -> None:
        """Check the number of jobs of one enqueue call."""
        if batch and not size:
            raise InvalidArgumentError("requests", "must hold at least one job")
        if size > self._settings.max_batch_size:
            raise InvalidArgumentError(
                "requests",
                f"holds {size} jobs; at most {self._settings.max_batch_size} per call",
            )

    def page_size(self, size: int) -> int:
        """Return the page size to use for a requested one (0: the default)."""
        if size < 0 or size > self._settings.max_page_size:
            raise InvalidArgumentError(
                "page_size", f"must be between 0 and {self._settings.max_page_size}, got {size}"
            )
        return size or DEFAULT_PAGE_SIZE

    def job_filter(self, request: queue_service_pb2.ListJobsRequest) -> JobFilter:
        """The filter of a ``ListJobs`` request."""
        return JobFilter(
            queue=validate_queue_name(request.queue, "queue") if request.queue else "",
            type=request.type,
            states=frozenset(job_state(s, "states") for s in request.states),
        )

    def payload(self, payload: bytes, field: str) -> None:
        """Check a payload's size."""
        limit = self._settings.max_payload_bytes
        if len(payload) > limit:
            raise PayloadTooLargeError(
                field, f"is {len(payload)} bytes; the gateway accepts at most {limit} bytes"
            )

    def new_job(
        self, req: queue_service_pb2.EnqueueJobRequest, now: float, prefix: str = ""
    ) -> NewJob:
        """Validate an enqueue request; errors name ``prefix + field``."""

        def invalid(field: str, message: str) -> InvalidArgumentError:
            return InvalidArgumentError(prefix + field, message)

        if not req.type:
            raise invalid("type", "is required, for example 'email:send'")
        if len(req.type) > MAX_TYPE_LENGTH or not req.type.isprintable():
            raise invalid("type", f"must be 1-{MAX_TYPE_LENGTH} printable characters")
        # The field names are built only for an error: most requests have none.
        queue = req.queue
        if not queue or not QUEUE_NAME.match(queue):
            queue = validate_queue_name(queue, prefix + "queue")
        if len(req.payload) > self._settings.max_payload_bytes:
            self.payload(req.payload, prefix + "payload")
        # Most jobs have none: an empty map skips the checks and the copy.
        attributes: dict[str, str] = {}
        if req.attributes:
            if len(req.attributes) > self._settings.max_attributes:
                raise invalid("attributes", f"at most {self._settings.max_attributes} entries")
            if sum(len(k) + len(v) for k, v in req.attributes.items()) > MAX_ATTRIBUTE_BYTES:
                raise invalid(
                    "attributes", f"keys and values total at most {MAX_ATTRIBUTE_BYTES} bytes"
                )
            attributes = dict(req.attributes)
        if len(req.deduplication_key) > MAX_KEY_LENGTH:
            raise invalid("deduplication_key", f"at most {MAX_KEY_LENGTH} characters")
        if len(req.request_id) > MAX_KEY_LENGTH:
            raise invalid("request_id", f"at most {MAX_KEY_LENGTH} characters")
        if req.concurrency_key:
            try:
                check_key(req.concurrency_key)
            except ValueError as error:
                raise invalid("concurrency_key", str(error)) from None
        max_retries = req.max_retries if req.HasField("max_retries") else DEFAULT_MAX_RETRIES
        if not 0 <= max_retries <= MAX_RETRIES_LIMIT:
            raise invalid("max_retries", f"must be between 0 and {MAX_RETRIES_LIMIT}")
        return NewJob(
            queue=queue,
            type=req.type,
            payload=req.payload,
            content_type=req.content_type or "application/octet-stream",
            attributes=attributes,
            max_retries=max_retries,
            timeout=self._timeout(req, invalid)
            if req.HasField("timeout")
            else self._default_timeout,
            deduplication_key=req.deduplication_key,
            schedule_time=_schedule_time(req, now, invalid)
            if req.WhichOneof("when") is not None
            else None,
            request_id=req.request_id,
            priority=priority(req.priority, prefix + "priority")
            if req.HasField("priority")
            else DEFAULT_PRIORITY,
            concurrency_key=req.concurrency_key,
        )

    def _timeout(self, req: queue_service_pb2.EnqueueJobRequest, invalid: _Invalid) -> float | None:
        if not req.HasField("timeout"):
            return self._default_timeout
        seconds = req.timeout.ToTimedelta().total_seconds()
        if not 0 < seconds <= MAX_TIMEOUT:
            raise invalid(
                "timeout", f"must be positive and at most {MAX_TIMEOUT:g}s, got {seconds}s"
            )
        return seconds

    # Worker streams ----------------------------------------------------------

    def consumer(self, frame: worker_service_pb2.StreamJobsRequest) -> Consumer:
        """The consumer a stream's first frame opens."""
        kind = frame.WhichOneof("kind")
        if kind != "open":
            raise InvalidArgumentError(
                "open", f"the first frame of StreamJobs must be `open`, got `{kind}`"
            )
        req = frame.open
        limit = self._settings.max_in_flight_limit
        if not req.worker_id or len(req.worker_id) > MAX_KEY_LENGTH:
            raise InvalidArgumentError(
                "open.worker_id", f"is required, at most {MAX_KEY_LENGTH} chars"
            )
        if not 1 <= req.max_in_flight <= limit:
            raise InvalidArgumentError(
                "open.max_in_flight", f"must be between 1 and {limit}, got {req.max_in_flight}"
            )
        if len(req.queues) > MAX_QUEUES or len(req.job_types) > MAX_JOB_TYPES:
            raise InvalidArgumentError(
                "open.queues", f"at most {MAX_QUEUES} queues and {MAX_JOB_TYPES} job types"
            )
        queues = tuple(
            dict.fromkeys(validate_queue_name(q, "open.queues") for q in req.queues or [""])
        )
        lease = self._settings.lease_duration.total_seconds()
        if req.HasField("lease_duration"):
            lease = self.lease_duration(req.lease_duration)
        if len(req.host) > MAX_KEY_LENGTH or len(req.sdk) > MAX_KEY_LENGTH or req.pid < 0:
            raise InvalidArgumentError(
                "open.host", f"host and sdk at most {MAX_KEY_LENGTH} chars, pid not negative"
            )
        return Consumer(
            worker_id=req.worker_id,
            queues=queues,
            job_types=frozenset(req.job_types),
            lease_duration=lease,
            on_revoke=_ignore,  # replaced by the stream's session
            host=req.host,
            pid=req.pid,
            sdk=req.sdk,
            labels=dict(req.labels),
        )

    def lease_duration(self, value: duration_pb2.Duration) -> float:
        """Keep a requested lease length within the configured bounds."""
        seconds = value.ToTimedelta().total_seconds()
        low = self._settings.min_lease_duration.total_seconds()
        return min(self._settings.max_lease_duration.total_seconds(), max(low, seconds))

    @staticmethod
    def retry_delay(value: duration_pb2.Duration) -> float | None:
        """Seconds of a nack's ``retry_delay``, or None when out of range."""
        delay = value.ToTimedelta().total_seconds()
        return delay if 0 <= delay <= MAX_SCHEDULE_AHEAD else None


def _schedule_time(
    req: queue_service_pb2.EnqueueJobRequest, now: float, invalid: _Invalid
) -> float | None:
    which = req.WhichOneof("when")
    if which == "delay":
        delay = req.delay.seconds + req.delay.nanos / 1e9
        if delay < 0:
            raise invalid("delay", f"must not be negative, got {delay:g}s")
        if delay > MAX_SCHEDULE_AHEAD:
            raise invalid("delay", "must be at most 10 years")
        return now + delay if delay > 0 else None
    if which == "schedule_time":
        at = req.schedule_time.seconds + req.schedule_time.nanos / 1e9
        if at <= 0:
            raise invalid("schedule_time", "must be a time after 1970-01-01")
        if at > now + MAX_SCHEDULE_AHEAD:
            raise invalid("schedule_time", "must be at most 10 years ahead")
        # A time in the past means "as soon as possible".
        return at if at > now else None
    return None
