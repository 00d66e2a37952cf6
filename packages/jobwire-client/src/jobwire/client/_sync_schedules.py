"""`Client`'s recurring schedules: register, look up, list, pause, resume, delete, trigger."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from jobwire.client._models import Job
from jobwire.client._schedules import MisfirePolicy, Schedule, ScheduleList
from jobwire.client._sync_calls import SyncCalls
from jobwire.v1 import schedule_service_pb2 as S


class SyncSchedules(SyncCalls):
    """The schedule methods of `Client`."""

    def register_recurring(
        self,
        name: str,
        type: str,
        payload: Any = None,
        *,
        schedule: str | timedelta,
        time_zone: str = "UTC",
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        attributes: Mapping[str, str] | None = None,
        content_type: str | None = None,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.SKIP,
        description: str = "",
        priority: int | None = None,
    ) -> Schedule:
        """Creates the recurring job `name`, or updates it if it exists.

        Safe to call at every deploy: a schedule an operator paused stays paused.

        Args:
            name: Unique name of the schedule, e.g. "daily-report".
            type: Type of the job each occurrence enqueues.
            payload: Payload of each job, encoded like `enqueue`'s.
            schedule: A five-field cron expression ("0 9 * * *"), an interval in
                words ("every 30 minutes", "1h30m") or a timedelta.
            time_zone: IANA time zone the cron expression is read in.
            queue: Queue of the jobs.
            max_retries: Retries per job; None means the gateway's default.
            timeout: Longest one attempt may run.
            attributes: Metadata copied onto each job.
            content_type: Media type of the payload, overriding the default.
            misfire_policy: What to do with occurrences missed while no gateway ran.
            description: Free text for operators.
            priority: Priority of each job, 0 to 9 (higher first); None means 5.

        Raises:
            InvalidArgumentError: Invalid cron, time zone or interval; the error
                names the field.
        """
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
        return self._schedule(self._call(self._schedules.UpdateSchedule, request).schedule)

    def get_schedule(self, name: str) -> Schedule:
        """Returns the schedule `name`.

        Raises:
            ScheduleNotFoundError: No schedule has this name.
        """
        request = S.GetScheduleRequest(name=name)
        return self._schedule(self._call(self._schedules.GetSchedule, request).schedule)

    def list_schedules(self) -> ScheduleList:
        """Returns every schedule, sorted by name, as a list that displays as a table."""
        schedules = ScheduleList()
        request = S.ListSchedulesRequest(page_size=1000)
        while True:
            response = self._call(self._schedules.ListSchedules, request)
            schedules.extend(map(self._schedule, response.schedules))
            if not response.next_page_token:
                return schedules
            request.page_token = response.next_page_token

    def pause_schedule(self, name: str) -> Schedule:
        """Stops the schedule from firing until `resume_schedule`."""
        request = S.PauseScheduleRequest(name=name)
        return self._schedule(self._call(self._schedules.PauseSchedule, request).schedule)

    def resume_schedule(self, name: str) -> Schedule:
        """Resumes a paused schedule from its next occurrence after now."""
        request = S.ResumeScheduleRequest(name=name)
        return self._schedule(self._call(self._schedules.ResumeSchedule, request).schedule)

    def delete_schedule(self, name: str, *, missing_ok: bool = False) -> None:
        """Deletes the schedule; jobs it already enqueued are not affected.

        Raises:
            ScheduleNotFoundError: No schedule has this name and `missing_ok` is false.
        """
        request = S.DeleteScheduleRequest(name=name, allow_missing=missing_ok)
        self._call(self._schedules.DeleteSchedule, request)

    def trigger_schedule(self, name: str) -> Job:
        """Enqueues the schedule's job now, outside its timetable."""
        request = S.TriggerScheduleRequest(name=name)
        return self._job(self._call(self._schedules.TriggerSchedule, request).job)
