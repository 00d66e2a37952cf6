from __future__ import annotations

from datetime import timedelta

import pytest

from jobwire.worker import (
    ConnectionFailedError,
    HandlerNotFoundError,
    NonRetryableError,
    Retry,
    SerializationError,
    WorkerError,
)
from jobwire.worker._errors import nack_for_exception, nack_for_timeout


def raised(exc: BaseException) -> BaseException:
    """Return ``exc`` with a traceback, as a handler would have raised it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def test_every_error_has_one_root_and_a_default_message() -> None:
    for cls in (Retry, NonRetryableError, SerializationError):
        assert issubclass(cls, WorkerError)
        assert str(cls()) == cls.__doc__.strip().splitlines()[0]  # type: ignore[union-attr]
    assert str(NonRetryableError()) == "The job failed and must not be retried."
    assert str(NonRetryableError("bad input")) == "bad input"
    assert NonRetryableError("bad input").message == "bad input"

    class Undocumented(NonRetryableError):
        pass

    assert str(Undocumented()) == "The job failed and must not be retried."


def test_connection_failed_error_names_the_code() -> None:
    error = ConnectionFailedError("UNAUTHENTICATED", "missing token")
    assert str(error) == "UNAUTHENTICATED: missing token"
    assert (error.code, error.details) == ("UNAUTHENTICATED", "missing token")


def test_retry_delay_accepts_seconds_and_timedelta() -> None:
    assert Retry().delay is None
    assert Retry(2.5).delay == timedelta(seconds=2.5)
    assert Retry(timedelta(minutes=1)).delay == timedelta(minutes=1)
    with pytest.raises(ValueError, match="negative"):
        Retry(-1)


def test_retry_maps_to_a_retryable_nack_with_delay() -> None:
    item = nack_for_exception("lease-1", raised(Retry(3, "rate limited")), attempt=2)
    assert item.lease_id == "lease-1"
    assert item.HasField("retryable")
    assert item.retryable
    assert item.retry_delay.ToTimedelta() == timedelta(seconds=3)
    assert item.failure.message == "rate limited"
    assert item.failure.type == "Retry"
    assert item.failure.details == ""
    assert item.failure.attempt == 2


def test_retry_without_delay_leaves_it_to_the_gateway() -> None:
    item = nack_for_exception("lease-1", raised(Retry()), attempt=1)
    assert item.retryable
    assert not item.HasField("retry_delay")


def test_non_retryable_errors_map_to_non_retryable_nacks() -> None:
    class InvalidEmail(NonRetryableError):
        """The address is invalid."""

    item = nack_for_exception("lease-1", raised(InvalidEmail()), attempt=1)
    assert item.HasField("retryable")
    assert not item.retryable
    assert not item.failure.retryable
    assert item.failure.type == "InvalidEmail"
    assert item.failure.message == "The address is invalid."
    assert "Traceback" in item.failure.details


def test_handler_not_found_is_non_retryable_and_names_the_type() -> None:
    item = nack_for_exception("lease-1", raised(HandlerNotFoundError("pdf:render")), attempt=1)
    assert not item.retryable
    assert item.failure.type == "HandlerNotFoundError"
    assert "'pdf:render'" in item.failure.message


def test_other_exceptions_are_retryable_with_traceback() -> None:
    def crash() -> None:
        raise ValueError("boom")

    try:
        crash()
    except ValueError as exc:
        item = nack_for_exception("lease-1", exc, attempt=1)
    assert item.retryable
    assert not item.HasField("retry_delay")
    assert (item.failure.message, item.failure.type) == ("boom", "ValueError")
    assert "in crash" in item.failure.details
    assert "ValueError: boom" in item.failure.details


def test_empty_messages_fall_back_to_the_class_name() -> None:
    item = nack_for_exception("lease-1", raised(KeyError()), attempt=1)
    assert item.failure.message == "KeyError"


def test_huge_tracebacks_are_truncated_from_the_start() -> None:
    item = nack_for_exception("lease-1", raised(RuntimeError("x" * 100_000)), attempt=1)
    assert len(item.failure.details) < 20_000
    assert item.failure.details.startswith("...\n")
    assert item.failure.details.rstrip().endswith("x")


def test_timeout_nack() -> None:
    item = nack_for_timeout("lease-1", 1.5, attempt=3)
    assert item.retryable
    assert item.failure.type == "TIMEOUT"
    assert "1.5s" in item.failure.message
    assert item.failure.attempt == 3
