"""``jobwire.v1.ScheduleService``: recurring jobs.

Registered on every gateway. When ``scheduler.enabled`` is false every RPC
answers FAILED_PRECONDITION with reason ``SCHEDULER_DISABLED``, so a client
learns why instead of getting UNIMPLEMENTED.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Set
from datetime import timedelta

from google.protobuf import field_mask_pb2

from jobwire.gateway._errors import (
    InvalidArgumentError,
    InvalidCronError,
    InvalidPageTokenError,
    ScheduleNotFoundError,
    SchedulerDisabledError,
)
from jobwire.gateway._models import duration
from jobwire.gateway._service import JobService
from jobwire.gateway.scheduler import (
    JobTemplate,
    MisfirePolicy,
    Scheduler,
    ScheduleSpec,
    parse_cron,
    parse_time_zone,
)
from jobwire.gateway.scheduler.models import Schedule
from jobwire.gateway.scheduler.rows import spec_of
from jobwire.gateway.scheduler.timetable import MAX_INTERVAL, check_interval
from jobwire.gateway.servicers._rpc import Context, unary
from jobwire.v1 import queue_service_pb2, schedule_service_pb2, schedule_service_pb2_grpc

S = schedule_service_pb2
SCHEDULE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_DESCRIPTION_LENGTH = 1024

_MISFIRE = {
    S.MISFIRE_POLICY_UNSPECIFIED: MisfirePolicy.SKIP,
    S.MISFIRE_POLICY_SKIP: MisfirePolicy.SKIP,
    S.MISFIRE_POLICY_RUN_ONCE: MisfirePolicy.RUN_ONCE,
}
_MISFIRE_PROTO = {
    MisfirePolicy.SKIP: S.MISFIRE_POLICY_SKIP,
    MisfirePolicy.RUN_ONCE: S.MISFIRE_POLICY_RUN_ONCE,
}
# Fields of Schedule an update_mask may name; the rest are the name (the
# identity) and output-only fields.
_SETTABLE = frozenset(
    {"job_template", "cron", "interval", "time_zone", "misfire_policy", "paused", "description"}
)
_TEMPLATE_FIELDS = frozenset(S.JobTemplate.DESCRIPTOR.fields_by_name)
_SPEC = frozenset({"cron", "interval"})


class ScheduleServicer(schedule_service_pb2_grpc.ScheduleServiceServicer):
    """Serves ScheduleService on top of :class:`Scheduler`.

    Args:
        scheduler: the gateway's scheduler, or None when it is disabled.
        jobs: validates job templates exactly as enqueue requests.
    """

    def __init__(self, scheduler: Scheduler | None, jobs: JobService) -> None:
        self._scheduler = scheduler
        self._jobs = jobs

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler; raises ``SchedulerDisabledError`` when there is none."""
        if self._scheduler is None:
            raise SchedulerDisabledError()
        return self._scheduler

    @unary
    async def CreateSchedule(
        self, request: S.CreateScheduleRequest, context: Context
    ) -> S.CreateScheduleResponse:
        """Create a schedule; ALREADY_EXISTS when the name is taken."""
        scheduler = self.scheduler
        if not request.HasField("schedule"):
            raise InvalidArgumentError("schedule", "is required")
        row = await scheduler.create_schedule(self._spec(request.schedule))
        return S.CreateScheduleResponse(schedule=schedule_proto(row))

    @unary
    async def UpdateSchedule(
        self, request: S.UpdateScheduleRequest, context: Context
    ) -> S.UpdateScheduleResponse:
        """Update the masked fields (all when empty); ``allow_missing`` creates it."""
        scheduler = self.scheduler
        if not request.HasField("schedule"):
            raise InvalidArgumentError("schedule", "is required")
        name = _check_name(request.schedule.name, "schedule.name")
        paths = _mask_paths(request.update_mask)

        def change(current: ScheduleSpec | None) -> ScheduleSpec:
            if current is None or paths is None:
                return self._spec(request.schedule)
            merged = spec_proto(current)
            _merge(request.schedule, merged, paths)
            return self._spec(merged)

        row, created = await scheduler.update_schedule(
            name, change, allow_missing=request.allow_missing
        )
        return S.UpdateScheduleResponse(schedule=schedule_proto(row), created=created)

    @unary
    async def GetSchedule(
        self, request: S.GetScheduleRequest, context: Context
    ) -> S.GetScheduleResponse:
        """Return one schedule."""
        scheduler = self.scheduler
        row = await scheduler.get_schedule(_check_name(request.name, "name"))
        return S.GetScheduleResponse(schedule=schedule_proto(row))

    @unary
    async def ListSchedules(
        self, request: S.ListSchedulesRequest, context: Context
    ) -> S.ListSchedulesResponse:
        """Return one page of schedules, sorted by name."""
        scheduler = self.scheduler
        if not 0 <= request.page_size <= MAX_PAGE_SIZE:
            raise InvalidArgumentError(
                "page_size", f"must be between 0 and {MAX_PAGE_SIZE}, got {request.page_size}"
            )
        after = _decode_token(request.page_token) if request.page_token else ""
        rows, more = await scheduler.list_schedules(after, request.page_size or DEFAULT_PAGE_SIZE)
        token = _encode_token(rows[-1].name) if more else ""
        return S.ListSchedulesResponse(
            schedules=[schedule_proto(row) for row in rows], next_page_token=token
        )

    @unary
    async def DeleteSchedule(
        self, request: S.DeleteScheduleRequest, context: Context
    ) -> S.DeleteScheduleResponse:
        """Delete a schedule; jobs it already enqueued stay."""
        scheduler = self.scheduler
        name = _check_name(request.name, "name")
        if not await scheduler.delete_schedule(name) and not request.allow_missing:
            raise ScheduleNotFoundError(name)
        return S.DeleteScheduleResponse()

    @unary
    async def PauseSchedule(
        self, request: S.PauseScheduleRequest, context: Context
    ) -> S.PauseScheduleResponse:
        """Stop a schedule from firing."""
        scheduler = self.scheduler
        row = await scheduler.pause_schedule(_check_name(request.name, "name"))
        return S.PauseScheduleResponse(schedule=schedule_proto(row))

    @unary
    async def ResumeSchedule(
        self, request: S.ResumeScheduleRequest, context: Context
    ) -> S.ResumeScheduleResponse:
        """Resume a schedule at its first occurrence after now."""
        scheduler = self.scheduler
        row = await scheduler.resume_schedule(_check_name(request.name, "name"))
        return S.ResumeScheduleResponse(schedule=schedule_proto(row))

    @unary
    async def TriggerSchedule(
        self, request: S.TriggerScheduleRequest, context: Context
    ) -> S.TriggerScheduleResponse:
        """Enqueue the schedule's job now."""
        scheduler = self.scheduler
        job = await scheduler.trigger_schedule(_check_name(request.name, "name"))
        return S.TriggerScheduleResponse(job=job.to_proto(full=False))

    def _spec(self, msg: S.Schedule) -> ScheduleSpec:
        """Validate a Schedule message; errors name the field as ``schedule.…``."""
        name = _check_name(msg.name, "schedule.name")
        if not msg.HasField("job_template"):
            raise InvalidArgumentError("schedule.job_template", "is required (at least its type)")
        time_zone = msg.time_zone or "UTC"
        try:
            parse_time_zone(time_zone)
        except ValueError as error:
            raise InvalidArgumentError("schedule.time_zone", str(error)) from None
        cron, interval = _timing(msg, time_zone)
        if msg.misfire_policy not in _MISFIRE:
            raise InvalidArgumentError(
                "schedule.misfire_policy", f"unknown value {msg.misfire_policy}"
            )
        if len(msg.description) > MAX_DESCRIPTION_LENGTH:
            raise InvalidArgumentError(
                "schedule.description", f"at most {MAX_DESCRIPTION_LENGTH} characters"
            )
        return ScheduleSpec(
            name=name,
            template=self._template(msg.job_template),
            cron=cron,
            interval=interval,
            time_zone=time_zone,
            misfire_policy=_MISFIRE[msg.misfire_policy],
            paused=msg.paused,
            description=msg.description,
        )

    def _template(self, msg: S.JobTemplate) -> JobTemplate:
        # The same rules as EnqueueJob, so a schedule never fires a job the
        # gateway would have refused.
        request = queue_service_pb2.EnqueueJobRequest(
            queue=msg.queue,
            type=msg.type,
            payload=msg.payload,
            content_type=msg.content_type,
            attributes=msg.attributes,
        )
        if msg.HasField("max_retries"):
            request.max_retries = msg.max_retries
        if msg.HasField("timeout"):
            request.timeout.CopyFrom(msg.timeout)
        if msg.HasField("priority"):
            request.priority = msg.priority
        job = self._jobs.new_job(request, field_prefix="schedule.job_template.")
        return JobTemplate(
            type=job.type,
            queue=job.queue,
            payload=job.payload,
            content_type=job.content_type,
            attributes=job.attributes,
            max_retries=job.max_retries,
            timeout=job.timeout,
            priority=job.priority,
        )


def _timing(msg: S.Schedule, time_zone: str) -> tuple[str | None, timedelta | None]:
    which = msg.WhichOneof("spec")
    if which == "cron":
        try:
            return parse_cron(msg.cron, time_zone).expression, None
        except ValueError as error:
            raise InvalidCronError("schedule.cron", str(error)) from None
    if which == "interval":
        span = msg.interval
        # Checked before ToTimedelta, which overflows on absurd values.
        if span.seconds < 0 or span.nanos < 0 or span.seconds > MAX_INTERVAL.total_seconds():
            raise InvalidArgumentError("schedule.interval", "must be between 1 second and 366 days")
        try:
            return None, check_interval(span.ToTimedelta())
        except ValueError as error:
            raise InvalidArgumentError("schedule.interval", str(error)) from None
    raise InvalidArgumentError(
        "schedule.cron",
        "is required unless interval is set: give a cron expression such as '0 9 * * *' "
        "or an interval of at least 1 second",
    )


def _check_name(name: str, field: str) -> str:
    if not name:
        raise InvalidArgumentError(field, "is required")
    if not SCHEDULE_NAME.match(name):
        raise InvalidArgumentError(
            field,
            f"invalid schedule name {name[:64]!r}: use 1-128 letters, digits, '.', '_', ':' or '-'",
        )
    return name


def _mask_paths(mask: field_mask_pb2.FieldMask) -> frozenset[str] | None:
    """Return the masked paths, or None for "every settable field"."""
    if not mask.paths or "*" in mask.paths:
        return None
    for path in mask.paths:
        top, _, sub = path.partition(".")
        if top not in _SETTABLE or (sub and (top != "job_template" or sub not in _TEMPLATE_FIELDS)):
            settable = ", ".join(sorted(_SETTABLE))
            raise InvalidArgumentError(
                "update_mask", f"cannot update {path!r}; paths may name: {settable}"
            )
    return frozenset(mask.paths)


def _merge(source: S.Schedule, target: S.Schedule, paths: Set[str]) -> None:
    """Copy the fields in ``paths`` from ``source`` onto ``target``."""
    plain = [path for path in paths if path not in _SPEC]
    if plain:
        field_mask_pb2.FieldMask(paths=plain).MergeMessage(
            source, target, replace_message_field=True, replace_repeated_field=True
        )
    if paths & _SPEC:
        # cron and interval are one choice: naming either takes the request's.
        which = source.WhichOneof("spec")
        if which == "cron":
            target.cron = source.cron
        elif which == "interval":
            target.interval.CopyFrom(source.interval)
        else:
            target.ClearField("spec")


def _encode_token(after: str) -> str:
    raw = json.dumps({"after": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        after = data["after"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        after = None
    if not isinstance(after, str):
        raise InvalidPageTokenError("page_token", "malformed; pass next_page_token as returned")
    return after


def spec_proto(spec: ScheduleSpec) -> S.Schedule:
    """Return the settable fields of ``spec`` as a Schedule message."""
    template = spec.template
    msg = S.Schedule(
        name=spec.name,
        job_template=S.JobTemplate(
            queue=template.queue,
            type=template.type,
            payload=template.payload,
            content_type=template.content_type,
            attributes=template.attributes,
            max_retries=template.max_retries,
            priority=template.priority,
        ),
        time_zone=spec.time_zone,
        misfire_policy=_MISFIRE_PROTO[spec.misfire_policy],
        paused=spec.paused,
        description=spec.description,
    )
    if template.timeout is not None:
        msg.job_template.timeout.CopyFrom(duration(template.timeout))
    if spec.cron is not None:
        msg.cron = spec.cron
    elif spec.interval is not None:
        msg.interval.FromTimedelta(spec.interval)
    return msg


def schedule_proto(row: Schedule) -> S.Schedule:
    """Return a stored schedule as a Schedule message, output fields included."""
    msg = spec_proto(spec_of(row))
    msg.last_error = row.last_error
    msg.last_job_id = row.last_job_id
    msg.create_time.FromDatetime(row.create_time)
    msg.update_time.FromDatetime(row.update_time)
    if row.next_run_time is not None:
        msg.next_run_time.FromDatetime(row.next_run_time)
    if row.last_run_time is not None:
        msg.last_run_time.FromDatetime(row.last_run_time)
    return msg
