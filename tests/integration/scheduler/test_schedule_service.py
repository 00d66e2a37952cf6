"""ScheduleService over gRPC: every RPC, field masks, pages, and bad input naming the field."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from jobwire.gateway import Gateway
from jobwire.v1 import queue_service_pb2, schedule_service_pb2, schedule_service_pb2_grpc

from support import Producer, State, seconds

S = schedule_service_pb2
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> schedule_service_pb2_grpc.ScheduleServiceAsyncStub:
    return schedule_service_pb2_grpc.ScheduleServiceStub(channel)


def schedule(name: str = "report", **fields: Any) -> S.Schedule:
    fields.setdefault("job_template", S.JobTemplate(type="report:build", payload=b"{}"))
    if "interval" not in fields:
        fields.setdefault("cron", "0 9 * * *")
    return S.Schedule(name=name, **fields)


def interval(value: float) -> duration_pb2.Duration:
    span = duration_pb2.Duration()
    span.FromTimedelta(timedelta(seconds=value))
    return span


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str, field: str | None = None
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    assert error.code() == code, error.details()
    status = rpc_status.from_call(error)  # type: ignore[arg-type]  # AioRpcError is call-like
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == reason, info
    if field is not None:
        assert info.metadata["field"] == field
        assert (error.details() or "").startswith(f"{field}: ")
    return error


async def test_create_get_list_delete(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
) -> None:
    created = (
        await stub.CreateSchedule(
            S.CreateScheduleRequest(
                schedule=schedule(
                    time_zone="America/New_York",
                    description="daily report",
                    misfire_policy=S.MISFIRE_POLICY_RUN_ONCE,
                )
            )
        )
    ).schedule
    assert created.name == "report"
    assert created.cron == "0 9 * * *"
    assert created.time_zone == "America/New_York"
    assert created.misfire_policy == S.MISFIRE_POLICY_RUN_ONCE
    assert created.job_template.queue == "default"
    assert created.job_template.max_retries == 3
    next_run = created.next_run_time.ToDatetime()
    assert next_run.minute == 0
    assert created.next_run_time.seconds > created.create_time.seconds
    got = (await stub.GetSchedule(S.GetScheduleRequest(name="report"))).schedule
    assert got == created
    listed = await stub.ListSchedules(S.ListSchedulesRequest())
    assert [s.name for s in listed.schedules] == ["report"]
    assert listed.next_page_token == ""
    await stub.DeleteSchedule(S.DeleteScheduleRequest(name="report"))
    await expect_error(
        stub.GetSchedule(S.GetScheduleRequest(name="report")),
        grpc.StatusCode.NOT_FOUND,
        "SCHEDULE_NOT_FOUND",
    )
    await stub.DeleteSchedule(S.DeleteScheduleRequest(name="report", allow_missing=True))


async def test_duplicate_create_is_already_exists(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
) -> None:
    await stub.CreateSchedule(S.CreateScheduleRequest(schedule=schedule()))
    await expect_error(
        stub.CreateSchedule(S.CreateScheduleRequest(schedule=schedule())),
        grpc.StatusCode.ALREADY_EXISTS,
        "SCHEDULE_EXISTS",
    )


async def test_update_with_allow_missing_registers_then_updates(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
) -> None:
    request = S.UpdateScheduleRequest(schedule=schedule(), allow_missing=True)
    first = await stub.UpdateSchedule(request)
    assert first.created
    request.schedule.cron = "30 8 * * *"
    second = await stub.UpdateSchedule(request)
    assert not second.created
    assert second.schedule.cron == "30 8 * * *"
    assert second.schedule.create_time == first.schedule.create_time
    assert second.schedule.next_run_time != first.schedule.next_run_time
    await expect_error(
        stub.UpdateSchedule(S.UpdateScheduleRequest(schedule=schedule("absent"))),
        grpc.StatusCode.NOT_FOUND,
        "SCHEDULE_NOT_FOUND",
    )


async def test_update_mask_changes_only_the_named_fields(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
) -> None:
    original = (
        await stub.CreateSchedule(
            S.CreateScheduleRequest(schedule=schedule(description="old", time_zone="Europe/Paris"))
        )
    ).schedule

    async def update(paths: list[str], **fields: Any) -> S.Schedule:
        request = S.UpdateScheduleRequest(
            schedule=S.Schedule(name="report", **fields),
            update_mask=field_mask_pb2.FieldMask(paths=paths),
        )
        return (await stub.UpdateSchedule(request)).schedule

    described = await update(["description"], description="new", time_zone="Asia/Tokyo")
    assert described.description == "new"
    assert described.time_zone == "Europe/Paris"
    assert described.cron == original.cron
    assert described.next_run_time == original.next_run_time  # timing unchanged

    retyped = await update(["job_template.type"], job_template=S.JobTemplate(type="report:v2"))
    assert retyped.job_template.type == "report:v2"
    assert retyped.job_template.payload == b"{}"

    switched = await update(["interval"], interval=interval(90))
    assert switched.WhichOneof("spec") == "interval"
    assert switched.interval.ToTimedelta() == timedelta(seconds=90)
    assert switched.next_run_time.seconds % 90 == 0

    cleared = update(["cron"], description="no spec given")
    await expect_error(cleared, INVALID, "INVALID_ARGUMENT", "schedule.cron")

    for path in ["next_run_time", "name", "job_template.nope", "nope"]:
        await expect_error(update([path]), INVALID, "INVALID_ARGUMENT", "update_mask")


async def test_pause_resume_and_trigger(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub, producer: Producer
) -> None:
    await stub.CreateSchedule(S.CreateScheduleRequest(schedule=schedule()))
    paused = (await stub.PauseSchedule(S.PauseScheduleRequest(name="report"))).schedule
    assert paused.paused
    assert not paused.HasField("next_run_time")
    resumed = (await stub.ResumeSchedule(S.ResumeScheduleRequest(name="report"))).schedule
    assert not resumed.paused
    assert resumed.HasField("next_run_time")
    job = (await stub.TriggerSchedule(S.TriggerScheduleRequest(name="report"))).job
    assert job.schedule == "report"
    assert job.type == "report:build"
    assert job.state == State.STATE_PENDING
    assert (await producer.get(job.id)).payload == b"{}"
    # A trigger is not an occurrence: the timetable is untouched.
    after = (await stub.GetSchedule(S.GetScheduleRequest(name="report"))).schedule
    assert after.next_run_time == resumed.next_run_time
    assert not after.HasField("last_run_time")


async def test_pages_follow_names(stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub) -> None:
    for name in ["e", "a", "d", "c", "b"]:
        await stub.CreateSchedule(S.CreateScheduleRequest(schedule=schedule(name)))
    names: list[str] = []
    token = ""
    while True:
        page = await stub.ListSchedules(S.ListSchedulesRequest(page_size=2, page_token=token))
        names.extend(s.name for s in page.schedules)
        token = page.next_page_token
        if not token:
            break
    assert names == ["a", "b", "c", "d", "e"]


BAD_SCHEDULES = [
    (schedule(name=""), "schedule.name", "INVALID_ARGUMENT"),
    (schedule(name="no spaces"), "schedule.name", "INVALID_ARGUMENT"),
    (schedule(name="x" * 129), "schedule.name", "INVALID_ARGUMENT"),
    (S.Schedule(name="r", cron="0 9 * * *"), "schedule.job_template", "INVALID_ARGUMENT"),
    (
        schedule(job_template=S.JobTemplate(type="")),
        "schedule.job_template.type",
        "INVALID_ARGUMENT",
    ),
    (
        schedule(job_template=S.JobTemplate(type="t", queue="bad queue")),
        "schedule.job_template.queue",
        "INVALID_ARGUMENT",
    ),
    (
        schedule(job_template=S.JobTemplate(type="t", max_retries=-1)),
        "schedule.job_template.max_retries",
        "INVALID_ARGUMENT",
    ),
    (schedule(cron="61 * * * *"), "schedule.cron", "INVALID_CRON"),
    (schedule(cron="0 9 * * * *"), "schedule.cron", "INVALID_CRON"),
    (schedule(cron="0 0 30 2 *"), "schedule.cron", "INVALID_CRON"),
    (schedule(cron=""), "schedule.cron", "INVALID_CRON"),
    (
        S.Schedule(name="r", job_template=S.JobTemplate(type="t")),
        "schedule.cron",
        "INVALID_ARGUMENT",
    ),
    (schedule(interval=interval(0.5)), "schedule.interval", "INVALID_ARGUMENT"),
    (schedule(interval=interval(-5)), "schedule.interval", "INVALID_ARGUMENT"),
    (schedule(interval=interval(10**12)), "schedule.interval", "INVALID_ARGUMENT"),
    (schedule(time_zone="Mars/Olympus_Mons"), "schedule.time_zone", "INVALID_ARGUMENT"),
    (schedule(misfire_policy=7), "schedule.misfire_policy", "INVALID_ARGUMENT"),
    (schedule(description="x" * 2000), "schedule.description", "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize(("bad", "field", "reason"), BAD_SCHEDULES)
async def test_create_and_update_reject_bad_schedules(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
    bad: S.Schedule,
    field: str,
    reason: str,
) -> None:
    await expect_error(
        stub.CreateSchedule(S.CreateScheduleRequest(schedule=bad)), INVALID, reason, field
    )
    if bad.name == "r":
        await stub.CreateSchedule(S.CreateScheduleRequest(schedule=schedule("r")))
    update = S.UpdateScheduleRequest(schedule=bad, allow_missing=True)
    await expect_error(stub.UpdateSchedule(update), INVALID, reason, field)


async def test_a_request_without_schedule_is_invalid(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
) -> None:
    await expect_error(
        stub.CreateSchedule(S.CreateScheduleRequest()), INVALID, "INVALID_ARGUMENT", "schedule"
    )
    await expect_error(
        stub.UpdateSchedule(S.UpdateScheduleRequest()), INVALID, "INVALID_ARGUMENT", "schedule"
    )


def by_name(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub, name: str
) -> list[Awaitable[Any]]:
    """A call of every RPC that takes a schedule name."""
    return [
        stub.GetSchedule(S.GetScheduleRequest(name=name)),
        stub.DeleteSchedule(S.DeleteScheduleRequest(name=name)),
        stub.PauseSchedule(S.PauseScheduleRequest(name=name)),
        stub.ResumeSchedule(S.ResumeScheduleRequest(name=name)),
        stub.TriggerSchedule(S.TriggerScheduleRequest(name=name)),
    ]


@pytest.mark.parametrize("name", ["", "bad name!"])
async def test_rpcs_by_name_reject_invalid_names(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub, name: str
) -> None:
    for call in by_name(stub, name):
        await expect_error(call, INVALID, "INVALID_ARGUMENT", "name")


async def test_rpcs_by_name_answer_not_found(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
) -> None:
    for call in by_name(stub, "absent"):
        error = await expect_error(call, grpc.StatusCode.NOT_FOUND, "SCHEDULE_NOT_FOUND")
        assert "absent" in (error.details() or "")


@pytest.mark.parametrize(
    ("request_fields", "field", "reason"),
    [
        ({"page_size": -1}, "page_size", "INVALID_ARGUMENT"),
        ({"page_size": 1001}, "page_size", "INVALID_ARGUMENT"),
        ({"page_token": "not-a-token"}, "page_token", "INVALID_PAGE_TOKEN"),
        ({"page_token": "e30"}, "page_token", "INVALID_PAGE_TOKEN"),  # "{}"
    ],
)
async def test_list_rejects_bad_pages(
    stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
    request_fields: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    request = S.ListSchedulesRequest(**request_fields)
    await expect_error(stub.ListSchedules(request), INVALID, reason, field)


@pytest.fixture
async def disabled_stub(
    gateway_factory: Any,
) -> AsyncIterator[schedule_service_pb2_grpc.ScheduleServiceAsyncStub]:
    gateway: Gateway = await gateway_factory(scheduler={"enabled": False})
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield schedule_service_pb2_grpc.ScheduleServiceStub(channel)


async def test_disabled_scheduler_answers_failed_precondition(
    disabled_stub: schedule_service_pb2_grpc.ScheduleServiceAsyncStub,
) -> None:
    calls: list[Awaitable[Any]] = [
        disabled_stub.CreateSchedule(S.CreateScheduleRequest(schedule=schedule())),
        disabled_stub.UpdateSchedule(S.UpdateScheduleRequest(schedule=schedule())),
        disabled_stub.ListSchedules(S.ListSchedulesRequest()),
        *by_name(disabled_stub, "report"),
    ]
    assert len(calls) == 8
    for call in calls:
        error = await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION, "SCHEDULER_DISABLED")
        assert "scheduler" in (error.details() or "")


async def test_disabled_scheduler_leaves_long_delays_to_the_provider(gateway_factory: Any) -> None:
    gateway: Gateway = await gateway_factory(scheduler={"enabled": False})
    assert gateway.scheduler is None
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        job = await Producer(channel).enqueue(delay=seconds(3600))
    assert job.state == State.STATE_SCHEDULED
    stored = await gateway.provider.get(job.id)
    assert stored is not None
    assert stored.id == job.id


async def test_long_delay_is_held_by_the_scheduler_and_cancellable(
    gateway: Gateway, producer: Producer
) -> None:
    job = await producer.enqueue(delay=seconds(3600), deduplication_key="k")
    assert job.state == State.STATE_SCHEDULED
    assert gateway.scheduler is not None
    assert await gateway.scheduler.get_job(job.id) is not None  # held, not in memory
    got = await producer.get(job.id)
    assert got.state == State.STATE_SCHEDULED
    assert got.schedule_time == job.schedule_time
    assert got.payload == b"{}"
    again = await producer.stub.EnqueueJob(
        queue_service_pb2.EnqueueJobRequest(type="t", delay=seconds(3600), deduplication_key="k")
    )
    assert again.deduplicated
    assert again.job.id == job.id
    cancel = queue_service_pb2.CancelJobRequest(id=job.id, reason="not needed")
    cancelled = (await producer.stub.CancelJob(cancel)).job
    assert cancelled.state == State.STATE_CANCELLED
    assert cancelled.last_error.message == "not needed"
    assert (await producer.get(job.id)).state == State.STATE_CANCELLED
    assert (await producer.stub.CancelJob(cancel)).job.state == State.STATE_CANCELLED
    await expect_error(
        producer.stub.GetJob(queue_service_pb2.GetJobRequest(id="absent")),
        grpc.StatusCode.NOT_FOUND,
        "JOB_NOT_FOUND",
    )


async def test_short_delay_stays_with_the_provider(gateway: Gateway, producer: Producer) -> None:
    job = await producer.enqueue(delay=seconds(60))
    stored = await gateway.provider.get(job.id)
    assert stored is not None
    assert stored.state.name == "SCHEDULED"
    assert gateway.scheduler is not None
    assert await gateway.scheduler.get_job(job.id) is None


async def test_batch_mixes_held_and_direct_jobs_in_order(
    gateway: Gateway, producer: Producer
) -> None:
    requests = [
        queue_service_pb2.EnqueueJobRequest(type="a", delay=seconds(3600)),
        queue_service_pb2.EnqueueJobRequest(type="b"),
        queue_service_pb2.EnqueueJobRequest(type="c", delay=seconds(7200)),
    ]
    response = await producer.stub.EnqueueJobs(
        queue_service_pb2.EnqueueJobsRequest(requests=requests)
    )
    assert [r.job.type for r in response.results] == ["a", "b", "c"]
    assert [r.job.state for r in response.results] == [
        State.STATE_SCHEDULED,
        State.STATE_PENDING,
        State.STATE_SCHEDULED,
    ]
    assert gateway.scheduler is not None
    assert await gateway.scheduler.get_job(response.results[2].job.id) is not None
