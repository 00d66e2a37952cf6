"""Provider-independent job semantics: validation, defaults and page tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from jobwire.gateway._config import GatewaySettings
from jobwire.gateway._errors import (
    InvalidArgumentError,
    InvalidPageTokenError,
    JobNotFoundError,
    PayloadTooLargeError,
)
from jobwire.gateway._metrics import GatewayMetrics
from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway.providers.base import JobFilter, QueueCounts, QueueProvider
from jobwire.v1 import job_pb2, queue_service_pb2

if TYPE_CHECKING:
    from jobwire.gateway.scheduler import Scheduler

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
_Invalid = Callable[[str, str], InvalidArgumentError]
QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


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


class JobService:
    """Validates requests and forwards them to the provider, or to the scheduler.

    Jobs due further ahead than the scheduler's ``delay_threshold`` are held
    by the scheduler (they survive a restart, and providers such as SQS cannot
    delay that long); ``get_job`` and ``cancel_job`` find them there until
    they are due. ``list_jobs`` and ``stats`` answer for the provider's jobs only.
    """

    def __init__(
        self,
        settings: GatewaySettings,
        provider: QueueProvider,
        scheduler: Scheduler | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.provider = provider
        self.scheduler = scheduler
        self.metrics = metrics or GatewayMetrics()
        self._server = settings.server
        default_timeout = settings.server.default_job_timeout
        self._default_timeout = default_timeout.total_seconds() if default_timeout else None

    async def enqueue(
        self, requests: Sequence[queue_service_pb2.EnqueueJobRequest], *, batch: bool
    ) -> list[tuple[JobRecord, bool]]:
        """Validate every request first, then enqueue them all."""
        results = await self._enqueue(requests, batch=batch)
        for job, deduplicated in results:
            if not deduplicated:
                self.metrics.enqueued(job)
        return results

    async def _enqueue(
        self, requests: Sequence[queue_service_pb2.EnqueueJobRequest], *, batch: bool
    ) -> list[tuple[JobRecord, bool]]:
        if batch and not requests:
            raise InvalidArgumentError("requests", "must hold at least one job")
        if len(requests) > self._server.max_batch_size:
            raise InvalidArgumentError(
                "requests",
                f"holds {len(requests)} jobs; at most {self._server.max_batch_size} per call",
            )
        now = time.time()
        jobs = [
            self._new_job(req, now, f"requests[{i}]." if batch else "")
            for i, req in enumerate(requests)
        ]
        if self.scheduler is None:
            return await self.provider.enqueue(jobs)
        threshold = now + self.scheduler.delay_threshold
        held = [job.schedule_time is not None and job.schedule_time > threshold for job in jobs]
        if not any(held):
            return await self.provider.enqueue(jobs)
        scheduled = iter(
            await self.scheduler.hold([j for j, h in zip(jobs, held, strict=True) if h])
        )
        direct = [job for job, h in zip(jobs, held, strict=True) if not h]
        queued = iter(await self.provider.enqueue(direct) if direct else [])
        return [next(scheduled) if h else next(queued) for h in held]

    def new_job(
        self, request: queue_service_pb2.EnqueueJobRequest, *, field_prefix: str = ""
    ) -> NewJob:
        """Validate ``request`` as an enqueue would; errors name ``field_prefix + field``."""
        return self._new_job(request, time.time(), field_prefix)

    async def get_job(self, job_id: str) -> JobRecord:
        """Return one job, from the provider or, while it waits, from the scheduler."""
        try:
            return await self.provider.get_job(_require_id(job_id))
        except JobNotFoundError:
            held = await self.scheduler.get_job(job_id) if self.scheduler else None
            if held is None:
                raise
            return held

    async def list_jobs(
        self, request: queue_service_pb2.ListJobsRequest
    ) -> tuple[list[JobRecord], str]:
        """Return a page of jobs and the token of the next page."""
        where = JobFilter(
            queue=validate_queue_name(request.queue, "queue") if request.queue else "",
            type=request.type,
            states=frozenset(_state(s, "states") for s in request.states),
        )
        limit = self._page_size(request.page_size)
        fingerprint = _fingerprint(where)
        cursor = _decode_token(request.page_token, fingerprint) if request.page_token else None
        jobs, next_cursor = await self.provider.list_jobs(where, limit, cursor)
        token = _encode_token(next_cursor, fingerprint) if next_cursor is not None else ""
        return jobs, token

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        """Cancel one job."""
        if len(reason) > 1024:
            raise InvalidArgumentError("reason", "at most 1024 characters")
        try:
            return await self.provider.cancel_job(_require_id(job_id), reason)
        except JobNotFoundError:
            held = await self.scheduler.cancel_job(job_id, reason) if self.scheduler else None
            if held is not None:
                return held
        # Unknown to the scheduler too (NOT_FOUND), or handed over to the
        # provider between the two calls.
        return await self.provider.cancel_job(job_id, reason)

    async def stats(self, queue: str) -> list[QueueCounts]:
        """Counts of one queue or of all."""
        return await self.provider.stats(validate_queue_name(queue, "queue") if queue else None)

    def _page_size(self, size: int) -> int:
        if size < 0 or size > self._server.max_page_size:
            raise InvalidArgumentError(
                "page_size", f"must be between 0 and {self._server.max_page_size}, got {size}"
            )
        return size or DEFAULT_PAGE_SIZE

    def _new_job(self, req: queue_service_pb2.EnqueueJobRequest, now: float, prefix: str) -> NewJob:
        def invalid(field: str, message: str) -> InvalidArgumentError:
            return InvalidArgumentError(prefix + field, message)

        if not req.type:
            raise invalid("type", "is required, for example 'email:send'")
        if len(req.type) > MAX_TYPE_LENGTH or not req.type.isprintable():
            raise invalid("type", f"must be 1-{MAX_TYPE_LENGTH} printable characters")
        queue = validate_queue_name(req.queue, prefix + "queue")
        if len(req.payload) > self._server.max_payload_bytes:
            raise PayloadTooLargeError(
                prefix + "payload",
                f"is {len(req.payload)} bytes; the gateway accepts at most "
                f"{self._server.max_payload_bytes} bytes",
            )
        # Most jobs have none: an empty map skips the checks and the copy.
        attributes: dict[str, str] = {}
        if req.attributes:
            if len(req.attributes) > self._server.max_attributes:
                raise invalid("attributes", f"at most {self._server.max_attributes} entries")
            if sum(len(k) + len(v) for k, v in req.attributes.items()) > MAX_ATTRIBUTE_BYTES:
                raise invalid(
                    "attributes", f"keys and values total at most {MAX_ATTRIBUTE_BYTES} bytes"
                )
            attributes = dict(req.attributes)
        if len(req.deduplication_key) > MAX_KEY_LENGTH:
            raise invalid("deduplication_key", f"at most {MAX_KEY_LENGTH} characters")
        if len(req.request_id) > MAX_KEY_LENGTH:
            raise invalid("request_id", f"at most {MAX_KEY_LENGTH} characters")
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
            timeout=self._timeout(req, invalid),
            deduplication_key=req.deduplication_key,
            schedule_time=_schedule_time(req, now, invalid),
            request_id=req.request_id,
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


def _require_id(job_id: str) -> str:
    if not job_id:
        raise InvalidArgumentError("id", "is required")
    if len(job_id) > MAX_KEY_LENGTH:
        raise InvalidArgumentError("id", "is too long to be a job id")
    return job_id


def _state(value: int, field: str) -> JobState:
    try:
        return JobState(value)
    except ValueError:
        names = ", ".join(job_pb2.Job.State.keys()[1:])
        raise InvalidArgumentError(field, f"unknown state {value}; use one of {names}") from None


def _fingerprint(where: JobFilter) -> str:
    key = f"{where.queue}\0{where.type}\0{sorted(where.states)}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _encode_token(cursor: str, fingerprint: str) -> str:
    raw = json.dumps({"c": cursor, "f": fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str, fingerprint: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        cursor, used_for = data["c"], data["f"]
    except (ValueError, TypeError, KeyError):
        raise InvalidPageTokenError(
            "page_token", "malformed; pass next_page_token as returned"
        ) from None
    if not isinstance(cursor, str) or used_for != fingerprint:
        raise InvalidPageTokenError(
            "page_token", "belongs to a listing with other filters; start again without a token"
        )
    return cursor
