"""Conversions between Python times and the protobuf well-known types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2


def to_timedelta(value: float | timedelta) -> timedelta:
    """Reads a number of seconds or a timedelta."""
    return value if isinstance(value, timedelta) else timedelta(seconds=value)


def to_duration(value: float | timedelta) -> duration_pb2.Duration:
    """Returns a number of seconds or a timedelta as a `google.protobuf.Duration`."""
    duration = duration_pb2.Duration()
    duration.FromTimedelta(to_timedelta(value))
    return duration


def to_datetime(timestamp: timestamp_pb2.Timestamp) -> datetime:
    """Returns a `google.protobuf.Timestamp` as an aware UTC datetime."""
    return timestamp.ToDatetime(tzinfo=UTC)
