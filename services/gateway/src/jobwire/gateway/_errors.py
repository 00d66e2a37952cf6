"""Domain errors of the gateway and their gRPC status.

Each error carries a canonical gRPC code and an ``ErrorInfo.reason``; the
servicers turn them into a ``google.rpc.Status`` so SDKs in any language can
map them to typed exceptions.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "jobwire.dev"


class GatewayError(Exception):
    """The gateway refused the request."""

    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"

    def __init__(self, message: str | None = None, **metadata: str) -> None:
        super().__init__(message or self.__doc__)
        self.message = message or self.__doc__ or ""
        self.metadata: Mapping[str, str] = metadata

    def to_status(self) -> grpc.Status:
        """Return the rich gRPC status carrying this error's ``ErrorInfo``."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=dict(self.metadata)
        )
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=[detail]
        )
        return rpc_status.to_status(status)


class StartError(GatewayError):
    """The gateway cannot start: a configuration or environment problem.

    Args:
        message: One line saying what is wrong and how to fix it.
        key: The configuration key at fault (``provider.type``), if one is.
    """

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "CANNOT_START"

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def install_hint(requirement: str) -> str:
    """The command that installs ``requirement`` (``'./services/gateway[sqs]'``) from a clone."""
    return f"install it from the repository root with: pip install {requirement}"


class InvalidArgumentError(GatewayError):
    """A request field is invalid."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field)
        self.field = field


class PayloadTooLargeError(InvalidArgumentError):
    """The payload is larger than the gateway accepts."""

    reason = "PAYLOAD_TOO_LARGE"


class InvalidPageTokenError(InvalidArgumentError):
    """The page token is malformed or belongs to another listing."""

    reason = "INVALID_PAGE_TOKEN"


class JobNotFoundError(GatewayError):
    """No job has this id (it may have left the gateway's history)."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "JOB_NOT_FOUND"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found", job_id=job_id)


class JobTerminalError(GatewayError):
    """The job already finished."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "JOB_TERMINAL"

    def __init__(self, job_id: str, state: str) -> None:
        super().__init__(f"job {job_id!r} already finished ({state})", job_id=job_id, state=state)


class ResourceExhaustedError(GatewayError):
    """A gateway limit was reached."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class UnavailableError(GatewayError):
    """The gateway cannot serve the request now; retry later."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


class InvalidCronError(InvalidArgumentError):
    """The cron expression is not five valid fields."""

    reason = "INVALID_CRON"


class ScheduleNotFoundError(GatewayError):
    """No schedule has this name."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "SCHEDULE_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"schedule {name!r} not found", schedule=name)


class ScheduleExistsError(GatewayError):
    """A schedule with this name already exists."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "SCHEDULE_EXISTS"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"schedule {name!r} already exists; use UpdateSchedule to change it", schedule=name
        )


class SchedulerDisabledError(GatewayError):
    """The scheduler is disabled in this gateway's configuration (``scheduler.enabled``)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "SCHEDULER_DISABLED"


class UnauthenticatedError(GatewayError):
    """The request carries no valid bearer token."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDeniedError(GatewayError):
    """The token's role may not call this method."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class JobNotRetryableError(GatewayError):
    """Only dead, failed and cancelled jobs can be replayed."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "JOB_NOT_RETRYABLE"

    def __init__(
        self, job_id: str, state: str, replayable: str = "dead, failed and cancelled"
    ) -> None:
        super().__init__(
            f"job {job_id!r} is {state.lower()}; only {replayable} jobs can be retried"
            if job_id
            else f"only {replayable} jobs can be retried on this provider",
            job_id=job_id,
            state=state,
        )


class PriorityUnsupportedError(GatewayError):
    """The provider cannot order jobs by priority."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "PRIORITY_UNSUPPORTED"

    def __init__(self, field: str, provider: str) -> None:
        super().__init__(
            f"{field}: the {provider} provider has no priorities; leave priority unset (5)",
            field=field,
            provider=provider,
        )


class WorkerNotFoundError(GatewayError):
    """No connected worker stream has this id."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "WORKER_NOT_FOUND"

    def __init__(self, worker_id: str) -> None:
        super().__init__(
            f"no worker {worker_id!r} is connected to any gateway (see ListWorkers)",
            worker_id=worker_id,
        )


class ProviderUnsupportedError(GatewayError):
    """The configured provider does not implement this operation."""

    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "PROVIDER_UNSUPPORTED"

    def __init__(self, provider: str, hook: str) -> None:
        super().__init__(
            f"{provider} does not implement {hook} yet (see services/gateway/PROVIDERS.md)",
            provider=provider,
            hook=hook,
        )


class FlowControlUnsupportedError(GatewayError):
    """The provider does not enforce flow control (concurrency keys, limits, rates) yet."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FLOW_CONTROL_UNSUPPORTED"

    def __init__(self, field: str, provider: str) -> None:
        super().__init__(
            f"{field}: the {provider} provider does not enforce flow control yet (the memory, "
            "SQLite and PostgreSQL providers do; see the README's Flow control); leave it unset",
            field=field,
            provider=provider,
        )
