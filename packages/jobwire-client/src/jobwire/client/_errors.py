"""Exceptions raised by the client, and their mapping from gRPC errors.

Every exception derives from `JobwireError`. When no message is given, the
class docstring is the message.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from datetime import timedelta
from enum import IntEnum
from typing import TYPE_CHECKING, cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobwire.v1 import queue_service_pb2

if TYPE_CHECKING:
    from jobwire.client._models import Job, JobFailure

ERROR_DOMAIN = "jobwire.dev"


class StatusCode(IntEnum):
    """Canonical gRPC status codes, so callers never need to import grpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class JobwireError(Exception):
    """A jobwire operation failed."""

    #: gRPC status code of the failure.
    code: StatusCode = StatusCode.UNKNOWN
    #: Machine-readable reason from the gateway's `google.rpc.ErrorInfo`, e.g. "JOB_NOT_FOUND".
    reason: str | None = None

    def __init__(
        self,
        message: str | None = None,
        *,
        code: StatusCode | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or _first_paragraph(inspect.getdoc(type(self))))
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason
        #: Details from the gateway's `ErrorInfo`, e.g. {"field": "type"}.
        self.metadata: dict[str, str] = dict(metadata or {})

    @property
    def message(self) -> str:
        """The error message."""
        return str(self.args[0])


def _first_paragraph(doc: str | None) -> str:
    return (doc or "").split("\n\n", 1)[0].replace("\n", " ")


# Request errors


class InvalidArgumentError(JobwireError, ValueError):
    """The request is invalid."""

    code = StatusCode.INVALID_ARGUMENT


class PayloadTooLargeError(InvalidArgumentError):
    """The payload is larger than the gateway accepts."""

    reason = "PAYLOAD_TOO_LARGE"


class NotFoundError(JobwireError):
    """The requested resource does not exist."""

    code = StatusCode.NOT_FOUND


class JobNotFoundError(NotFoundError):
    """No job has this id."""

    reason = "JOB_NOT_FOUND"


class ScheduleNotFoundError(NotFoundError):
    """No schedule has this name."""

    reason = "SCHEDULE_NOT_FOUND"


class WorkerNotFoundError(NotFoundError):
    """No connected worker stream has this id (see `list_workers`)."""

    reason = "WORKER_NOT_FOUND"


class AlreadyExistsError(JobwireError):
    """The resource already exists."""

    code = StatusCode.ALREADY_EXISTS


class FailedPreconditionError(JobwireError):
    """The resource is not in a state that allows the operation."""

    code = StatusCode.FAILED_PRECONDITION


class JobTerminalError(FailedPreconditionError):
    """The job already reached a terminal state."""

    reason = "JOB_TERMINAL"


class JobNotRetryableError(FailedPreconditionError):
    """Only dead, failed and cancelled jobs can be retried (SQS: dead and cancelled)."""

    reason = "JOB_NOT_RETRYABLE"


class PriorityUnsupportedError(FailedPreconditionError):
    """The gateway's provider has no priorities (SQS): leave `priority` unset."""

    reason = "PRIORITY_UNSUPPORTED"


class FlowControlUnsupportedError(FailedPreconditionError):
    """The gateway's provider does not enforce flow control yet: leave `concurrency_key` unset."""

    reason = "FLOW_CONTROL_UNSUPPORTED"


# Access errors


class UnauthenticatedError(JobwireError):
    """The gateway did not accept the credentials; check the token."""

    code = StatusCode.UNAUTHENTICATED


class PermissionDeniedError(JobwireError):
    """The credentials do not allow this operation."""

    code = StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(JobwireError):
    """The gateway is out of capacity or a quota is exhausted; retry later."""

    code = StatusCode.RESOURCE_EXHAUSTED


# Gateway and transport errors


class GatewayUnavailableError(JobwireError):
    """The jobwire gateway is unavailable."""

    code = StatusCode.UNAVAILABLE


class DeadlineExceededError(JobwireError, TimeoutError):
    """The call did not finish before its deadline."""

    code = StatusCode.DEADLINE_EXCEEDED


class UnimplementedError(JobwireError):
    """The gateway does not implement this operation."""

    code = StatusCode.UNIMPLEMENTED


class InternalError(JobwireError):
    """The gateway failed with an internal error."""

    code = StatusCode.INTERNAL


# Outcomes of waiting for a job


class JobDeadError(JobwireError):
    """The job is dead: its retries are exhausted or it failed without retry."""

    reason = "JOB_DEAD"

    def __init__(self, job: Job) -> None:
        failure = job.last_error
        cause = f": {failure.type or 'error'}: {failure.message}" if failure else ""
        super().__init__(f"job {job.id} ({job.type}) is dead after {job.attempt} attempt(s){cause}")
        #: The dead job.
        self.job = job

    @property
    def last_error(self) -> JobFailure | None:
        """Why the job's last attempt failed."""
        return self.job.last_error


class JobCancelledError(JobwireError):
    """The job was cancelled."""

    code = StatusCode.CANCELLED
    reason = "JOB_CANCELLED"

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} ({job.type}) was cancelled")
        #: The cancelled job.
        self.job = job


class WaitTimeoutError(DeadlineExceededError):
    """The job did not finish in time."""

    reason = "WAIT_TIMEOUT"

    def __init__(self, job_id: str, timeout: timedelta) -> None:
        super().__init__(f"job {job_id} did not finish within {timeout.total_seconds():g} s")
        #: Id of the job waited for.
        self.job_id = job_id


_BY_REASON: dict[str, type[JobwireError]] = {
    cls.reason: cls
    for cls in (
        PayloadTooLargeError,
        JobNotFoundError,
        ScheduleNotFoundError,
        WorkerNotFoundError,
        JobTerminalError,
        JobNotRetryableError,
        PriorityUnsupportedError,
        FlowControlUnsupportedError,
    )
    if cls.reason is not None
}

_BY_CODE: dict[StatusCode, type[JobwireError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        UnauthenticatedError,
        PermissionDeniedError,
        ResourceExhaustedError,
        GatewayUnavailableError,
        DeadlineExceededError,
        UnimplementedError,
        InternalError,
    )
}


def unreachable_message(address: str, details: str) -> str:
    """Says that no gateway answered at `address`, and how to start one."""
    return (
        f"no jobwire gateway answered at {address}; start one with `jobwire-gateway` "
        "(in a notebook or script, `jobwire.gateway.embedded()` runs one in-process) "
        f"or check the address ({details})"
    )


def from_rpc_error(error: grpc.RpcError, *, address: str) -> JobwireError:
    """Translates a failed gRPC call into the most specific `JobwireError`.

    Args:
        error: The error raised by a sync or `grpc.aio` call.
        address: The gateway address, named when the gateway cannot be reached.

    Returns:
        The exception to raise; the caller chains `error` to it.
    """
    info = _error_info(error)
    return from_status(
        StatusCode(error.code().value[0]),
        error.details() or "",
        info,
        address=address,
    )


def from_stream_error(error: queue_service_pb2.EnqueueStreamError, *, address: str) -> JobwireError:
    """Translates the refusal of an `EnqueueStream` frame, as `from_rpc_error` its unary call's."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=error.domain, metadata=error.metadata
    )
    return from_status(_code(error.code), error.message, info, address=address)


def from_status(
    code: StatusCode,
    details: str,
    info: error_details_pb2.ErrorInfo | None,
    *,
    address: str,
) -> JobwireError:
    """The most specific `JobwireError` for a status code and its `ErrorInfo`."""
    reason = info.reason if info is not None else None
    metadata = dict(info.metadata) if info is not None else {}
    cls = _BY_REASON.get(reason or "") if info is not None and info.domain == ERROR_DOMAIN else None
    if cls is None or cls.code != code:
        cls = _BY_CODE.get(code, JobwireError)
    if cls is GatewayUnavailableError and info is None:
        # No ErrorInfo means the gateway itself did not answer: the transport failed.
        details = unreachable_message(address, details)
    return cls(details or None, code=code, reason=reason, metadata=metadata)


def _code(value: int) -> StatusCode:
    try:
        return StatusCode(value)
    except ValueError:
        return StatusCode.UNKNOWN


def _error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    try:
        # A failed call raises an RpcError that is also its grpc.Call.
        status = rpc_status.from_call(cast(grpc.Call, error))
    except ValueError:
        # The trailer contradicts the call's own status; trust the call.
        return None
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None
