"""What `Client` and `AsyncClient` share: settings, request building, conversions, errors.

The twins only do the I/O; everything else lives here, once. Each twin is
assembled from one mixin per service area, side by side:

=============  ======================  =======================
area           `Client`                `AsyncClient`
=============  ======================  =======================
jobs           ``_sync_jobs.py``       ``_async_jobs.py``
watch, wait    ``_sync_watch.py``      ``_async_jobs.py``
schedules      ``_sync_schedules.py``  ``_async_schedules.py``
calls, stubs   ``_sync_calls.py``      ``_async_calls.py``
enqueue        ``_sync_stream.py``     ``_enqueue_stream.py``
unary batches  ``_sync_coalescer.py``  ``_coalescer.py``
pipeline       ``_pipeline.py``        ``_async_pipeline.py``
lifecycle      ``_client.py``          ``_async_client.py``
=============  ======================  =======================

A new RPC gets its request building and result conversion here, and one
method in each twin's mixin for its area. The pipelines' shared rules live
in ``_pipeline_base.py``; the enqueue stream is one engine for both twins
(``_enqueue_stream.py`` with ``_stream_parts.py``), which `Client` runs on a
loop thread of its own (``_sync_stream.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import timedelta
from typing import Any, TypeVar, Unpack, cast
from uuid import uuid4

import grpc
from grpc_health.v1 import health_pb2

from jobwire.client import _tracing
from jobwire.client.__about__ import __version__
from jobwire.client._config import CONNECT_TIMEOUT, DEFAULT_ADDRESS, RetryConfig, TLSConfig
from jobwire.client._convert import to_timedelta
from jobwire.client._errors import (
    DeadlineExceededError,
    GatewayUnavailableError,
    InternalError,
    JobCancelledError,
    JobDeadError,
    JobwireError,
    StatusCode,
    WaitTimeoutError,
    from_rpc_error,
    unreachable_message,
)
from jobwire.client._job_lists import JobPage
from jobwire.client._models import Job, JobState, JobWaiter
from jobwire.client._requests import JobRequest
from jobwire.client._schedules import RecurringOptions, Schedule, register_request
from jobwire.client._serializers import JsonSerializer, Serializer
from jobwire.v1 import job_pb2, queue_service_pb2, schedule_service_pb2

_T = TypeVar("_T")

#: Most entries in one EnqueueJobs call (the gateway's limit).
MAX_BATCH = 1000
#: Most encoded bytes of the jobs in one EnqueueJobs call, under gRPC's default 4 MiB limit.
MAX_BATCH_BYTES = 3 * 1024 * 1024

Metadata = tuple[tuple[str, str], ...]
#: What one enqueue came to: the gateway's answer, or the job's own error.
EnqueueOutcome = queue_service_pb2.EnqueueJobResponse | JobwireError


class BaseClient:
    """Settings and pure helpers of both clients."""

    def __init__(
        self,
        address: str | None,
        *,
        timeout: float | timedelta,
        token: str | None,
        serializer: Serializer | None,
        tls: TLSConfig | None,
        retry: RetryConfig,
    ) -> None:
        self._address = address or os.environ.get("JOBWIRE_GATEWAY") or DEFAULT_ADDRESS
        self._timeout = to_timedelta(timeout).total_seconds()
        token = os.environ.get("JOBWIRE_TOKEN") if token is None else token
        self._metadata: Metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._serializer = serializer or JsonSerializer()
        self._tls = tls
        self._retry = retry
        self._channel_options: list[tuple[str, str | int]] = [
            ("grpc.service_config", retry.service_config()),
            ("grpc.enable_retries", 1),
            # Lists and jobs with large payloads and results may exceed gRPC's 4 MiB default.
            ("grpc.max_receive_message_length", -1),
            ("grpc.primary_user_agent", f"jobwire-client-python/{__version__}"),
        ]
        if tls is not None and tls.server_name:
            self._channel_options.append(("grpc.ssl_target_name_override", tls.server_name))
        self._closed = False

    @property
    def address(self) -> str:
        """The gateway address, host:port."""
        return self._address

    @property
    def serializer(self) -> Serializer:
        """Encodes payloads that are not bytes and decodes payloads and results."""
        return self._serializer

    @property
    def is_closed(self) -> bool:
        """Whether the client was closed."""
        return self._closed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} address={self._address!r}>"

    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"the {type(self).__name__} is closed")

    def _error(self, error: grpc.RpcError) -> JobwireError:
        return from_rpc_error(error, address=self._address)

    def _aio_channel(self) -> grpc.aio.Channel:
        """Opens a grpc.aio channel to the gateway; call it on the loop that will use it."""
        if self._tls is None:
            return grpc.aio.insecure_channel(self._address, self._channel_options)
        return grpc.aio.secure_channel(
            self._address, self._tls.credentials(), self._channel_options
        )

    @property
    def _connect_timeout(self) -> float:
        return min(self._timeout, CONNECT_TIMEOUT)

    def _connect_error(self, error: grpc.RpcError) -> JobwireError:
        """Maps a failed health check of `connect`; silence means no gateway there."""
        mapped = self._error(error)
        if isinstance(mapped, DeadlineExceededError):
            details = f"no answer within {self._connect_timeout:g} s"
            return GatewayUnavailableError(unreachable_message(self._address, details))
        return mapped

    def _enqueue_request(self, request: JobRequest) -> queue_service_pb2.EnqueueJobRequest:
        proto = request.to_proto(self._serializer, request_id=uuid4().hex)
        _tracing.inject(proto.type, proto.queue, proto.attributes)
        return proto

    def _enqueued(
        self,
        request: queue_service_pb2.EnqueueJobRequest,
        response: queue_service_pb2.EnqueueJobResponse,
    ) -> Job:
        # The gateway does not echo payloads back. Unless deduplication returned an
        # earlier job, the stored payload is the one just sent. (Built once with it:
        # `dataclasses.replace` would build the job a second time.)
        payload = response.job.payload
        if not (response.deduplicated or payload):
            payload = request.payload
        return self._job(response.job, raw_payload=payload)

    def _enqueue_results(
        self, sent: int, response: queue_service_pb2.EnqueueJobsResponse
    ) -> Sequence[queue_service_pb2.EnqueueJobResponse]:
        if len(response.results) != sent:
            raise InternalError(
                f"the gateway answered {len(response.results)} results for {sent} enqueued jobs"
            )
        return response.results

    def _enqueue_error(self, error: grpc.RpcError, sent: int) -> JobwireError | None:
        """Maps a failed enqueue call of `sent` jobs; None when each must be resent alone.

        The gateway refuses a batch as a whole when one entry is invalid; sent
        alone, each job gets its own outcome (its request id makes a resend safe).
        """
        mapped = self._error(error)
        mapped.__cause__ = error
        if sent > 1 and self._split_on(mapped):
            return None
        return mapped

    @staticmethod
    def _split_on(error: JobwireError) -> bool:
        """Whether a batch refused with `error` is to be sent again job by job.

        The gateway refuses a whole batch for one invalid entry, or one its
        provider cannot take (a priority on SQS); alone, each job gets its own
        outcome, and a request id makes the resend safe.
        """
        return error.code in _SPLIT_CODES

    @staticmethod
    def _list_request(
        *,
        queue: str | None,
        type: str | None,
        state: JobState | Iterable[JobState] | None,
        page_size: int,
        page_token: str | None,
    ) -> queue_service_pb2.ListJobsRequest:
        return queue_service_pb2.ListJobsRequest(
            queue=queue or "",
            type=type or "",
            states=[s.to_proto() for s in states_of(state)],
            page_size=page_size,
            page_token=page_token or "",
        )

    @staticmethod
    def _get_request(job_id: str) -> queue_service_pb2.GetJobRequest:
        return queue_service_pb2.GetJobRequest(id=job_id, view=job_pb2.JOB_VIEW_FULL)

    @staticmethod
    def _watch_request(job_or_id: Job | str) -> queue_service_pb2.WatchJobRequest:
        return queue_service_pb2.WatchJobRequest(id=_job_id(job_or_id))

    def _job(self, proto: job_pb2.Job, *, raw_payload: bytes | None = None) -> Job:
        # Both twins implement `wait`, which lets the job wait for itself.
        client = cast(JobWaiter, self)
        return Job._from_proto(proto, self._serializer, client, raw_payload)

    def _schedule(self, proto: schedule_service_pb2.Schedule) -> Schedule:
        return Schedule.from_proto(proto, serializer=self._serializer)

    def _register_request(
        self,
        name: str,
        type: str,
        payload: Any,
        **options: Unpack[RecurringOptions],
    ) -> schedule_service_pb2.UpdateScheduleRequest:
        return register_request(name, type, payload, serializer=self._serializer, **options)

    def _page(self, response: queue_service_pb2.ListJobsResponse) -> JobPage:
        return JobPage(tuple(map(self._job, response.jobs)), response.next_page_token or None)

    @staticmethod
    def _wait_seconds(timeout: float | timedelta | None) -> float | None:
        return None if timeout is None else to_timedelta(timeout).total_seconds()

    def _wait_error(
        self, error: grpc.RpcError, job_or_id: Job | str, timeout: float | timedelta | None
    ) -> JobwireError:
        mapped = self._error(error)
        if timeout is not None and isinstance(mapped, DeadlineExceededError):
            return WaitTimeoutError(_job_id(job_or_id), to_timedelta(timeout))
        return mapped

    @staticmethod
    def _watch_ended(job_or_id: Job | str) -> JobwireError:
        return JobwireError(
            f"the gateway ended WatchJob before job {_job_id(job_or_id)} reached a terminal state"
        )

    def _outcomes(
        self,
        ids: Sequence[str],
        last: Sequence[job_pb2.Job | None],
        timeout: float | timedelta | None,
    ) -> list[Any]:
        """The results of `wait_all`, in order; raises for the first job without one."""
        results = []
        for job_id, proto in zip(ids, last, strict=True):
            if proto is None or proto.state not in _TERMINAL_PROTO:
                if timeout is None:
                    raise self._watch_ended(job_id)
                raise WaitTimeoutError(job_id, to_timedelta(timeout))
            results.append(self._outcome(self._job(proto)))
        return results

    @staticmethod
    def _outcome(job: Job) -> Any:
        """Returns the result of a terminal job, or raises why there is none."""
        if job.state is JobState.COMPLETED:
            return job.result
        if job.state is JobState.DEAD:
            raise JobDeadError(job)
        raise JobCancelledError(job)

    def _check_serving(self, response: health_pb2.HealthCheckResponse) -> None:
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            raise GatewayUnavailableError(
                f"the jobwire gateway at {self._address} is not serving (health: {status})"
            )


def states_of(state: JobState | Iterable[JobState] | None) -> tuple[JobState, ...]:
    """Reads a `state` filter: one state, several, or None for any."""
    if state is None:
        return ()
    if isinstance(state, str):
        return (JobState(state),)
    return tuple(JobState(s) for s in state)


_SPLIT_CODES = frozenset({StatusCode.INVALID_ARGUMENT, StatusCode.FAILED_PRECONDITION})

_TERMINAL_PROTO = frozenset(
    {job_pb2.Job.STATE_COMPLETED, job_pb2.Job.STATE_DEAD, job_pb2.Job.STATE_CANCELLED}
)


def _job_id(job_or_id: Job | str) -> str:
    return job_or_id.id if isinstance(job_or_id, Job) else job_or_id


def batches(items: Iterable[_T], size: Callable[[_T], int]) -> Iterator[list[_T]]:
    """Splits enqueue requests into the batches of EnqueueJobs calls, keeping their order.

    A batch holds at most `MAX_BATCH` entries and about `MAX_BATCH_BYTES`; an entry
    larger than that goes alone.
    """
    batch: list[_T] = []
    batch_bytes = 0
    for item in items:
        item_bytes = size(item)
        if batch and (len(batch) == MAX_BATCH or batch_bytes + item_bytes > MAX_BATCH_BYTES):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(item)
        batch_bytes += item_bytes
    if batch:
        yield batch
