"""Schedules through both SDK twins against a real gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobwire.client import (
    AsyncClient,
    Client,
    InvalidArgumentError,
    JobState,
    MisfirePolicy,
    ScheduleNotFoundError,
)


async def test_register_recurring_creates_then_updates_and_keeps_pause(
    client: AsyncClient,
) -> None:
    created = await client.register_recurring(
        "daily-report",
        "report:build",
        {"team": "a"},
        schedule="0 9 * * *",
        time_zone="America/New_York",
        description="morning report",
    )
    assert (created.cron, created.interval, created.time_zone) == (
        "0 9 * * *",
        None,
        "America/New_York",
    )
    assert created.payload == {"team": "a"}
    assert created.next_run_time is not None
    local = created.next_run_time.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (9, 0)
    await client.pause_schedule("daily-report")
    # Registering again at the next deploy updates the template, not the pause.
    updated = await client.register_recurring(
        "daily-report", "report:build", {"team": "b"}, schedule="every 30 minutes"
    )
    assert updated.paused
    assert updated.interval == timedelta(minutes=30)
    assert updated.cron is None
    assert updated.payload == {"team": "b"}
    resumed = await client.resume_schedule("daily-report")
    assert not resumed.paused
    assert resumed.next_run_time is not None
    assert [s.name for s in await client.list_schedules()] == ["daily-report"]


async def test_trigger_get_and_delete(client: AsyncClient) -> None:
    await client.register_recurring(
        "sync",
        "crm:sync",
        schedule=timedelta(hours=1),
        misfire_policy=MisfirePolicy.RUN_ONCE,
        max_retries=1,
    )
    schedule = await client.get_schedule("sync")
    assert schedule.misfire_policy is MisfirePolicy.RUN_ONCE
    assert schedule.max_retries == 1
    job = await client.trigger_schedule("sync")
    assert (job.type, job.schedule) == ("crm:sync", "sync")
    assert job.state is JobState.PENDING
    await client.delete_schedule("sync")
    with pytest.raises(ScheduleNotFoundError):
        await client.get_schedule("sync")
    await client.delete_schedule("sync", missing_ok=True)
    with pytest.raises(ScheduleNotFoundError):
        await client.delete_schedule("sync")


async def test_invalid_schedules_name_the_field(client: AsyncClient) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        await client.register_recurring("bad", "t", schedule="61 * * * *")
    assert caught.value.metadata.get("field") == "schedule.cron"
    with pytest.raises(InvalidArgumentError) as caught:
        await client.register_recurring("bad", "t", schedule="0 9 * * *", time_zone="Mars/Base")
    assert caught.value.metadata.get("field") == "schedule.time_zone"
    # The same typed error for a bad interval (read by the SDK) as for a bad cron.
    with pytest.raises(InvalidArgumentError, match="not an interval") as caught:
        await client.register_recurring("bad", "t", schedule="every fortnight")
    assert caught.value.metadata.get("field") == "schedule.interval"
    assert caught.value.reason == "INVALID_INTERVAL"


async def test_cron_nicknames(client: AsyncClient) -> None:
    for nickname in ("@hourly", "@daily", "@weekly"):
        schedule = await client.register_recurring(nickname[1:], "t", schedule=nickname)
        assert (schedule.cron, schedule.interval) == (nickname, None)
        assert schedule.next_run_time is not None


def test_sync_twin(sync_client: Client) -> None:
    at = datetime.now(UTC) + timedelta(days=2)
    job = sync_client.schedule("reminder:send", {"user": 7}, at=at)
    assert job.state is JobState.SCHEDULED
    stored = sync_client.get_job(job.id).schedule_time
    assert stored is not None
    assert abs(stored - at) < timedelta(milliseconds=1)
    schedule = sync_client.register_recurring("tick", "tick", schedule="every 5 minutes")
    assert schedule.interval == timedelta(minutes=5)
    assert sync_client.pause_schedule("tick").paused
    assert sync_client.trigger_schedule("tick").type == "tick"
    assert [s.name for s in sync_client.list_schedules()] == ["tick"]
    sync_client.delete_schedule("tick")
    assert sync_client.list_schedules() == []
