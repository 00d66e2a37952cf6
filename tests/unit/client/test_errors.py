from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import jobwire.client as jc
from jobwire.client import Job, JobFailure, JobState, StatusCode
from jobwire.client._errors import from_rpc_error, from_stream_error
from jobwire.v1 import queue_service_pb2

ADDRESS = "127.0.0.1:50051"


class FailedCall(grpc.RpcError):
    """What a failed call raises: an RpcError that also answers the grpc.Call questions."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing_metadata: tuple[tuple[str, str | bytes], ...] = (),
    ) -> None:
        self._code = code
        self._details = details
        self._trailing_metadata = trailing_metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:  # the stubs' metadatum type is type-check only
        return self._trailing_metadata


def rich_error(
    code: grpc.StatusCode,
    message: str,
    reason: str,
    metadata: Mapping[str, str] | None = None,
    domain: str = "jobwire.dev",
) -> FailedCall:
    """A failed call carrying a real grpc-status-details-bin trailer, as the gateway sends."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata))
    status = rpc_status.to_status(
        status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
    )
    return FailedCall(status.code, status.details, status.trailing_metadata)


def map_error(error: FailedCall) -> jc.JobwireError:
    return from_rpc_error(error, address=ADDRESS)


@pytest.mark.parametrize(
    ("code", "reason", "expected"),
    [
        (grpc.StatusCode.NOT_FOUND, "JOB_NOT_FOUND", jc.JobNotFoundError),
        (grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND", jc.ScheduleNotFoundError),
        (grpc.StatusCode.NOT_FOUND, "QUEUE_NOT_FOUND", jc.NotFoundError),
        (grpc.StatusCode.INVALID_ARGUMENT, "PAYLOAD_TOO_LARGE", jc.PayloadTooLargeError),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN", jc.InvalidArgumentError),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", jc.InvalidArgumentError),
        (grpc.StatusCode.FAILED_PRECONDITION, "JOB_TERMINAL", jc.JobTerminalError),
        (grpc.StatusCode.ALREADY_EXISTS, "SCHEDULE_EXISTS", jc.AlreadyExistsError),
        (grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED", jc.UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", jc.PermissionDeniedError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED", jc.ResourceExhaustedError),
        (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", jc.GatewayUnavailableError),
        (grpc.StatusCode.UNIMPLEMENTED, "PROVIDER_UNSUPPORTED", jc.UnimplementedError),
        (grpc.StatusCode.INTERNAL, "INTERNAL", jc.InternalError),
        (grpc.StatusCode.ABORTED, "CONFLICT", jc.JobwireError),
    ],
)
def test_most_specific_class_by_reason_then_code(
    code: grpc.StatusCode, reason: str, expected: type[jc.JobwireError]
) -> None:
    error = map_error(rich_error(code, "it failed", reason, {"jobId": "j1"}))
    assert type(error) is expected
    assert error.code == StatusCode(code.value[0])
    assert error.code.name == code.name
    assert error.reason == reason
    assert error.metadata == {"jobId": "j1"}
    assert error.message == str(error) == "it failed"


def test_a_refused_stream_frame_maps_as_its_unary_call_would() -> None:
    # The same table, through the flattened status of an EnqueueStream answer.
    for code, reason, expected in [
        (grpc.StatusCode.INVALID_ARGUMENT, "PAYLOAD_TOO_LARGE", jc.PayloadTooLargeError),
        (grpc.StatusCode.FAILED_PRECONDITION, "PRIORITY_UNSUPPORTED", jc.PriorityUnsupportedError),
        (grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", jc.GatewayUnavailableError),
        (grpc.StatusCode.INTERNAL, "INTERNAL", jc.InternalError),
    ]:
        flat = queue_service_pb2.EnqueueStreamError(
            code=code.value[0],
            message="it failed",
            reason=reason,
            domain="jobwire.dev",
            metadata={"field": "requests[3].priority"},
        )
        unary = map_error(rich_error(code, "it failed", reason, {"field": "requests[3].priority"}))
        error = from_stream_error(flat, address=ADDRESS)
        assert type(error) is type(unary) is expected
        assert (error.code, error.reason, error.metadata, error.message) == (
            unary.code,
            unary.reason,
            unary.metadata,
            unary.message,
        )
    odd = from_stream_error(queue_service_pb2.EnqueueStreamError(code=99), address=ADDRESS)
    assert type(odd) is jc.JobwireError
    assert odd.code is StatusCode.UNKNOWN


def test_invalid_argument_names_the_field() -> None:
    error = map_error(
        rich_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "type: is required",
            "INVALID_ARGUMENT",
            {"field": "type"},
        )
    )
    assert isinstance(error, jc.InvalidArgumentError)
    assert isinstance(error, ValueError)
    assert error.metadata["field"] == "type"


def test_reason_that_contradicts_the_code_falls_back_to_the_code() -> None:
    error = map_error(rich_error(grpc.StatusCode.INTERNAL, "odd", "JOB_NOT_FOUND"))
    assert type(error) is jc.InternalError
    assert error.reason == "JOB_NOT_FOUND"


def test_reason_of_another_domain_is_not_trusted() -> None:
    error = map_error(rich_error(grpc.StatusCode.NOT_FOUND, "x", "JOB_NOT_FOUND", domain="acme"))
    assert type(error) is jc.NotFoundError


def test_plain_status_maps_by_code() -> None:
    error = map_error(FailedCall(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert type(error) is jc.DeadlineExceededError
    assert isinstance(error, TimeoutError)
    assert error.reason is None
    assert error.metadata == {}


def test_unreachable_gateway_names_the_address_and_the_fix() -> None:
    details = "failed to connect to all addresses; last error: Connection refused"
    error = map_error(FailedCall(grpc.StatusCode.UNAVAILABLE, details))
    assert type(error) is jc.GatewayUnavailableError
    assert str(error).startswith(
        "no jobwire gateway answered at 127.0.0.1:50051; start one with `jobwire-gateway` "
        "(in a notebook or script, `jobwire.gateway.embedded()` runs one in-process) "
        "or check the address"
    )
    assert details in str(error)


def test_trailer_that_contradicts_the_call_is_ignored() -> None:
    rich = rich_error(grpc.StatusCode.NOT_FOUND, "gone", "JOB_NOT_FOUND")
    error = map_error(FailedCall(grpc.StatusCode.INTERNAL, "boom", rich.trailing_metadata()))
    assert type(error) is jc.InternalError
    assert error.message == "boom"


def test_default_message_is_the_docstring() -> None:
    assert str(jc.JobNotFoundError()) == "No job has this id."
    assert jc.JobNotFoundError().code is StatusCode.NOT_FOUND
    assert jc.JobwireError().code is StatusCode.UNKNOWN


def test_hierarchy() -> None:
    assert issubclass(jc.PayloadTooLargeError, jc.InvalidArgumentError)
    assert issubclass(jc.JobNotFoundError, jc.NotFoundError)
    assert issubclass(jc.JobTerminalError, jc.FailedPreconditionError)
    assert issubclass(jc.WaitTimeoutError, jc.DeadlineExceededError)
    assert issubclass(jc.WaitTimeoutError, TimeoutError)
    for name in jc.__all__:
        obj = getattr(jc, name)
        if isinstance(obj, type) and name.endswith("Error"):
            assert issubclass(obj, jc.JobwireError), name


def test_wait_outcome_errors() -> None:
    failure = JobFailure(message="smtp down", type="ConnectionError")
    dead = Job(id="j1", type="email:send", state=JobState.DEAD, attempt=4, last_error=failure)
    error = jc.JobDeadError(dead)
    assert (
        str(error) == "job j1 (email:send) is dead after 4 attempt(s): ConnectionError: smtp down"
    )
    assert error.last_error is failure
    assert error.job is dead

    cancelled = Job(id="j2", type="t", state=JobState.CANCELLED)
    assert str(jc.JobCancelledError(cancelled)) == "job j2 (t) was cancelled"

    timeout = jc.WaitTimeoutError("j3", timedelta(seconds=1.5))
    assert str(timeout) == "job j3 did not finish within 1.5 s"
    assert timeout.job_id == "j3"


def test_public_names_live_in_jobwire_client() -> None:
    assert jc.Client.__module__ == "jobwire.client"
    assert jc.JobNotFoundError.__module__ == "jobwire.client"
    assert repr(jc.JobState) == "<enum 'JobState'>"
