"""Exceptions of the worker SDK, and how a handler's failure becomes a ``nack``."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from datetime import timedelta

from jobwire.v1 import job_pb2, worker_service_pb2

_NackItem = worker_service_pb2.StreamJobsRequest.Nack.Item

# Tracebacks travel in every nack and are stored on the job; a runaway
# recursion must not turn one failure into a megabyte frame.
_MAX_DETAILS_CHARS = 16_384


def _first_docstring_line(cls: type) -> str:
    for klass in cls.__mro__:
        if klass.__doc__:
            return klass.__doc__.strip().splitlines()[0]
    return cls.__name__


class WorkerError(Exception):
    """A jobwire worker error."""

    def __init__(self, message: str | None = None) -> None:
        # Like procrastinate: a subclass documents itself once, in its
        # docstring, and that is also its default message.
        super().__init__(message or _first_docstring_line(type(self)))

    @property
    def message(self) -> str:
        """The error message."""
        return str(self)


class Retry(WorkerError):
    """The handler asked for the job to be retried.

    Raise it from a handler to end the attempt as failed-but-retryable, for
    example when a rate-limited API says "come back later". The attempt counts
    toward the job's ``max_retries``; once they are used up the job is dead.

    Args:
        delay: Retry no sooner than this (a ``timedelta`` or seconds). None
            leaves the delay to the gateway's exponential backoff.
        message: Recorded as the job's ``last_error.message``.
    """

    def __init__(self, delay: timedelta | float | None = None, message: str | None = None) -> None:
        super().__init__(message)
        if delay is not None and not isinstance(delay, timedelta):
            delay = timedelta(seconds=delay)
        if delay is not None and delay < timedelta(0):
            raise ValueError(f"retry delay must not be negative, got {delay}")
        self.delay: timedelta | None = delay


class NonRetryableError(WorkerError):
    """The job failed and must not be retried.

    Raise it (or a subclass) from a handler when another attempt cannot
    succeed, for example on an invalid payload: the job goes straight to
    ``STATE_DEAD`` whatever retries it has left.
    """


class HandlerNotFoundError(NonRetryableError):
    """No handler is registered for the job's type."""

    def __init__(self, job_type: str) -> None:
        super().__init__(f"no handler is registered for job type {job_type!r}")
        self.job_type = job_type


class SerializationError(NonRetryableError):
    """A payload or result could not be serialized or deserialized."""


class DuplicateHandlerError(WorkerError, ValueError):
    """A handler is already registered for this job type."""


class ConnectionFailedError(WorkerError):
    """The worker cannot keep a session with the gateway.

    Raised by :meth:`Worker.run` for errors that another attempt would not fix
    (a rejected token, an invalid ``open`` frame, a server without the worker
    service); transient ones are retried with backoff instead.

    Attributes:
        code: Name of the gRPC status code, for example ``"UNAUTHENTICATED"``.
        details: The gateway's explanation.
        reason: ``ErrorInfo.reason`` from the status details, if the gateway
            sent one (for example ``"INVALID_ARGUMENT"``).
        metadata: ``ErrorInfo.metadata`` (for example the offending ``field``).
    """

    def __init__(
        self,
        code: str,
        details: str,
        *,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {details}" if details else code)
        self.code = code
        self.details = details
        self.reason = reason
        self.metadata: Mapping[str, str] = dict(metadata or {})


def _details(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    if len(text) > _MAX_DETAILS_CHARS:
        # Keep the end: the innermost frames and the message matter most.
        text = "...\n" + text[-_MAX_DETAILS_CHARS:]
    return text


def nack_for_exception(lease_id: str, exc: BaseException, *, attempt: int) -> _NackItem:
    """Map what a handler raised to the ``nack`` item that reports it.

    :class:`Retry` is retryable, after its delay if it has one;
    :class:`NonRetryableError` and its subclasses are not; anything else is
    retryable with the exception's class name as the failure type and its
    traceback as the details.

    Args:
        lease_id: The lease of the failed delivery.
        exc: What the handler raised.
        attempt: Attempt number that failed.

    Returns:
        The nack item to send.
    """
    if isinstance(exc, Retry):
        # Control flow, not a crash: the traceback would only be noise.
        failure = job_pb2.JobFailure(
            message=str(exc), type="Retry", retryable=True, attempt=attempt
        )
        item = _NackItem(lease_id=lease_id, failure=failure, retryable=True)
        if exc.delay is not None:
            item.retry_delay.FromTimedelta(exc.delay)
        return item
    retryable = not isinstance(exc, NonRetryableError)
    failure = job_pb2.JobFailure(
        message=str(exc) or type(exc).__name__,
        type=type(exc).__name__,
        details=_details(exc),
        retryable=retryable,
        attempt=attempt,
    )
    return _NackItem(lease_id=lease_id, failure=failure, retryable=retryable)


def nack_for_timeout(lease_id: str, timeout: float, *, attempt: int) -> _NackItem:
    """Build the ``nack`` item of an attempt that ran past the job's timeout.

    Args:
        lease_id: The lease of the delivery.
        timeout: The job's timeout in seconds.
        attempt: Attempt number that timed out.

    Returns:
        A retryable nack item with failure type ``"TIMEOUT"``.
    """
    failure = job_pb2.JobFailure(
        message=f"handler ran past the job's timeout of {timeout:g}s",
        type="TIMEOUT",
        retryable=True,
        attempt=attempt,
    )
    return _NackItem(lease_id=lease_id, failure=failure, retryable=True)
