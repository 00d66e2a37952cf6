"""`AsyncClient`'s recurring schedules; see `Client`'s for the details."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from jobwire.client._async_calls import AsyncCalls
from jobwire.client._models import Job
from jobwire.client._schedules import MisfirePolicy, Schedule, ScheduleList
from jobwire.v1 import schedule_service_pb2 as S


class AsyncSchedules(AsyncCalls):
    """The schedule methods of `AsyncClient`."""

    async def register_recurring(
        self,
        name: str,
        type: str,
        payload: Any = None,
        *,
        schedule: str | timedelta,
        time_zone: str = "UTC",
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109  # the job's, not the call's
        attributes: Mapping[str, str] | None = None,
        content_type: str | None = None,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.SKIP,
        description: str = "",
        priority: int | None = None,
    ) -> Schedule:
        """Creates or updates the recurring job `name`; see `Client.register_recurring`."""
        request = self._register_request(
            name,
            type,
            payload,
            schedule=schedule,
            time_zone=time_zone,
            queue=queue,
            max_retries=max_retries,
            timeout=timeout,
            attributes=attributes,
            content_type=content_type,
            misfire_policy=misfire_policy,
            description=description,
            priority=priority,
        )
        return self._schedule(
            (await self._call(self._connect().schedules.UpdateSchedule, request)).schedule
        )

    async def get_schedule(self, name: str) -> Schedule:
        """Returns the schedule `name`; see `Client.get_schedule`."""
        request = S.GetScheduleRequest(name=name)
        return self._schedule(
            (await self._call(self._connect().schedules.GetSchedule, request)).schedule
        )

    async def list_schedules(self) -> ScheduleList:
        """Returns every schedule, sorted by name; see `Client.list_schedules`."""
        schedules = ScheduleList()
        request = S.ListSchedulesRequest(page_size=1000)
        while True:
            response = await self._call(self._connect().schedules.ListSchedules, request)
            schedules.extend(map(self._schedule, response.schedules))
            if not response.next_page_token:
                return schedules
            request.page_token = response.next_page_token

    async def pause_schedule(self, name: str) -> Schedule:
        """Stops the schedule from firing until `resume_schedule`; see `Client.pause_schedule`."""
        request = S.PauseScheduleRequest(name=name)
        return self._schedule(
            (await self._call(self._connect().schedules.PauseSchedule, request)).schedule
        )

    async def resume_schedule(self, name: str) -> Schedule:
        """Resumes a paused schedule; see `Client.resume_schedule`."""
        request = S.ResumeScheduleRequest(name=name)
        return self._schedule(
            (await self._call(self._connect().schedules.ResumeSchedule, request)).schedule
        )

    async def delete_schedule(self, name: str, *, missing_ok: bool = False) -> None:
        """Deletes the schedule; see `Client.delete_schedule`."""
        request = S.DeleteScheduleRequest(name=name, allow_missing=missing_ok)
        await self._call(self._connect().schedules.DeleteSchedule, request)

    async def trigger_schedule(self, name: str) -> Job:
        """Enqueues the schedule's job now, outside its timetable; see `Client.trigger_schedule`."""
        request = S.TriggerScheduleRequest(name=name)
        return self._job((await self._call(self._connect().schedules.TriggerSchedule, request)).job)
