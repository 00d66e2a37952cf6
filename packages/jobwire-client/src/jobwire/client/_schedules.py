"""Recurring schedules: the `Schedule` model, interval text and request building."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from google.protobuf import field_mask_pb2

from jobwire.client import _text
from jobwire.client._convert import to_datetime, to_duration
from jobwire.client._errors import InvalidArgumentError
from jobwire.client._rich import Rich, frame
from jobwire.client._serializers import JsonSerializer, Serializer, decode_payload, encode_payload
from jobwire.v1 import schedule_service_pb2 as S

if TYPE_CHECKING:
    import pandas as pd

_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 7 * 86400),
}
_PART = re.compile(r"(\d+(?:\.\d+)?)?\s*([a-z]+)")
_SEPARATORS = re.compile(r"\s*(?:,|\band\b)?\s*")
# Longer than any interval the gateway accepts (366 days); refused before
# building a timedelta, which overflows on huge numbers.
_TOO_LONG = 10 * 366 * 86400


def parse_interval(text: str) -> timedelta:
    """Parses a human interval such as "every 30 minutes".

    Accepted: an optional "every", then one or more `<number> <unit>` parts
    ("every 1 hour 30 minutes", "90s", "1h30m", "every 1.5 hours"), or a bare
    unit meaning one of it ("every day"). Units: s/sec/second(s),
    m/min/minute(s), h/hr/hour(s), d/day(s), w/week(s). The gateway checks the
    bounds (1 second to 366 days).

    Raises:
        InvalidArgumentError: The text is not an interval (reason
            `INVALID_INTERVAL`; the gateway answers an invalid cron expression
            with the same error, reason `INVALID_CRON`).
    """
    rest = text.strip().lower().removeprefix("every").strip()
    if not rest:
        raise _invalid_interval(f"not an interval: {text!r}; try 'every 30 minutes'")
    seconds = 0.0
    position = 0
    while position < len(rest):
        match = _PART.match(rest, position)
        if match is None or match[2] not in _UNITS:
            raise _invalid_interval(
                f"not an interval: {text!r}; try 'every 30 minutes' or '1h30m' "
                "(units: seconds, minutes, hours, days, weeks)"
            )
        seconds += (float(match[1]) if match[1] is not None else 1.0) * _UNITS[match[2]]
        separator = _SEPARATORS.match(rest, match.end())
        position = separator.end() if separator else match.end()
    if seconds <= 0:
        raise _invalid_interval(f"an interval must be longer than zero, got {text!r}")
    if seconds > _TOO_LONG:
        raise _invalid_interval(f"interval {text!r} is too long; use a cron expression")
    return timedelta(seconds=seconds)


def _invalid_interval(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"schedule.interval: {message}",
        reason="INVALID_INTERVAL",
        metadata={"field": "schedule.interval"},
    )


class MisfirePolicy(StrEnum):
    """What a schedule does with occurrences missed while no gateway ran."""

    #: Drop them; fire next at the first occurrence after now.
    SKIP = "skip"
    #: Fire once for all of them, then continue on the timetable.
    RUN_ONCE = "run_once"

    def to_proto(self) -> S.MisfirePolicy.ValueType:
        """Returns the `jobwire.v1.MisfirePolicy` value."""
        if self is MisfirePolicy.RUN_ONCE:
            return S.MISFIRE_POLICY_RUN_ONCE
        return S.MISFIRE_POLICY_SKIP

    @classmethod
    def from_proto(cls, value: S.MisfirePolicy.ValueType) -> MisfirePolicy:
        """Reads a `jobwire.v1.MisfirePolicy` value; unspecified means SKIP."""
        return cls.RUN_ONCE if value == S.MISFIRE_POLICY_RUN_ONCE else cls.SKIP


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule(Rich):
    """A recurring job as the gateway stores it."""

    name: str
    #: Type of the job each occurrence enqueues.
    type: str
    queue: str = "default"
    #: Five-field cron expression, when the schedule is cron-based.
    cron: str | None = None
    #: Fixed interval, when the schedule is interval-based.
    interval: timedelta | None = None
    time_zone: str = "UTC"
    misfire_policy: MisfirePolicy = MisfirePolicy.SKIP
    paused: bool = False
    next_run_time: datetime | None = None
    last_run_time: datetime | None = None
    last_error: str | None = None
    last_job_id: str | None = None
    description: str = ""
    content_type: str = ""
    raw_payload: bytes = b""
    attributes: Mapping[str, str] = field(default_factory=dict, hash=False)
    max_retries: int | None = None
    timeout: timedelta | None = None
    #: Priority of each job (0 to 9, higher first).
    priority: int = 5
    create_time: datetime | None = None
    update_time: datetime | None = None
    _serializer: Serializer | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_proto(cls, proto: S.Schedule, *, serializer: Serializer | None = None) -> Schedule:
        """Converts a `jobwire.v1.Schedule`."""
        template = proto.job_template

        def when(
            name: Literal["next_run_time", "last_run_time", "create_time", "update_time"],
        ) -> datetime | None:
            return to_datetime(getattr(proto, name)) if proto.HasField(name) else None

        return cls(
            name=proto.name,
            type=template.type,
            queue=template.queue or "default",
            cron=proto.cron if proto.WhichOneof("spec") == "cron" else None,
            interval=(
                proto.interval.ToTimedelta() if proto.WhichOneof("spec") == "interval" else None
            ),
            time_zone=proto.time_zone or "UTC",
            misfire_policy=MisfirePolicy.from_proto(proto.misfire_policy),
            paused=proto.paused,
            next_run_time=when("next_run_time"),
            last_run_time=when("last_run_time"),
            last_error=proto.last_error or None,
            last_job_id=proto.last_job_id or None,
            description=proto.description,
            content_type=template.content_type,
            raw_payload=template.payload,
            attributes=dict(template.attributes),
            max_retries=template.max_retries if template.HasField("max_retries") else None,
            timeout=template.timeout.ToTimedelta() if template.HasField("timeout") else None,
            priority=template.priority if template.HasField("priority") else 5,
            create_time=when("create_time"),
            update_time=when("update_time"),
            _serializer=serializer,
        )

    @property
    def payload(self) -> Any:
        """The payload each job gets, decoded like a job's payload."""
        serializer = self._serializer or JsonSerializer()
        return decode_payload(self.raw_payload, self.content_type, serializer)

    @property
    def every(self) -> str:
        """The timetable in words: the cron expression or the interval."""
        if self.cron is not None:
            return self.cron
        return f"every {_text.duration_text(self.interval or timedelta(0))}"

    def __repr__(self) -> str:
        state = "paused" if self.paused else f"next={self.next_run_time}"
        return f"<Schedule {self.name!r} {self.type!r} {self.every} {self.time_zone} {state}>"


class ScheduleList(list[Schedule], Rich):
    """What `list_schedules()` returns: a plain list of schedules that displays as a table."""

    def to_pandas(self) -> pd.DataFrame:
        """Returns a data frame with one row per schedule (needs the `pandas` extra).

        Raises:
            ImportError: pandas is not installed; `pip install './packages/jobwire-client[pandas]'`.
        """
        return frame(self)


# Everything register_recurring sets; `paused` is left out so a redeploy that
# registers again does not resume a schedule an operator paused.
_REGISTER_MASK = ("job_template", "cron", "interval", "time_zone", "misfire_policy", "description")


class RecurringOptions(TypedDict):
    """The options of `register_recurring`, as passed to the request builder."""

    schedule: str | timedelta
    time_zone: str
    queue: str
    max_retries: int | None
    timeout: float | timedelta | None
    attributes: Mapping[str, str] | None
    content_type: str | None
    misfire_policy: MisfirePolicy | str
    description: str
    priority: int | None


def register_request(
    name: str,
    type: str,
    payload: Any,
    *,
    serializer: Serializer,
    schedule: str | timedelta,
    time_zone: str,
    queue: str,
    max_retries: int | None,
    timeout: float | timedelta | None,
    attributes: Mapping[str, str] | None,
    content_type: str | None,
    misfire_policy: MisfirePolicy | str,
    description: str,
    priority: int | None = None,
) -> S.UpdateScheduleRequest:
    """Builds the register-or-update request of `register_recurring`.

    `schedule` is a cron expression ("0 9 * * *"), interval text ("every 30
    minutes") or a timedelta.
    """
    body, body_type = encode_payload(payload, serializer, content_type)
    template = S.JobTemplate(
        queue=queue,
        type=type,
        payload=body,
        content_type=body_type,
        attributes=dict(attributes or {}),
    )
    if max_retries is not None:
        template.max_retries = max_retries
    if timeout is not None:
        template.timeout.CopyFrom(to_duration(timeout))
    if priority is not None:
        template.priority = priority
    proto = S.Schedule(
        name=name,
        job_template=template,
        time_zone=time_zone,
        misfire_policy=MisfirePolicy(misfire_policy).to_proto(),
        description=description,
    )
    if isinstance(schedule, timedelta):
        proto.interval.CopyFrom(to_duration(schedule))
    elif not schedule.strip().startswith("@") and (
        schedule.strip().lower().startswith("every") or not any(c in schedule for c in " *")
    ):
        # "every 5 minutes", "90s", "1h30m": cron always has spaces or stars,
        # or is a nickname such as "@daily".
        proto.interval.CopyFrom(to_duration(parse_interval(schedule)))
    else:
        proto.cron = schedule
    return S.UpdateScheduleRequest(
        schedule=proto,
        update_mask=field_mask_pb2.FieldMask(paths=_REGISTER_MASK),
        allow_missing=True,
    )
