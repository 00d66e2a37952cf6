"""Recurring schedules: timing, last error, the next occurrences, pause/resume/trigger."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from croniter import croniter
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jobwire.client import Schedule
from jobwire.dashboard._render import dashboard, flash
from jobwire.dashboard._security import ensure_writable, verified_form

OCCURRENCES = 5


def upcoming(schedule: Schedule, now: datetime, count: int = OCCURRENCES) -> list[datetime]:
    """The next `count` times the schedule fires, in its time zone (paused or not)."""
    start = schedule.next_run_time or now
    zone = ZoneInfo(schedule.time_zone or "UTC")
    if schedule.interval is not None:
        return [(start + schedule.interval * n).astimezone(zone) for n in range(count)]
    if schedule.cron:
        # croniter's first answer is after its start: begin just before the next run.
        times = croniter(schedule.cron, start.astimezone(zone).replace(microsecond=0))
        first = start.astimezone(zone)
        following = [times.get_next(datetime) for _ in range(count - 1)]
        return [first, *following]
    return []


async def schedules_page(request: Request) -> Response:
    """GET /schedules."""
    board = dashboard(request)
    schedules = await board.client.list_schedules()
    now = datetime.now(UTC)
    rows = [(schedule, upcoming(schedule, now)) for schedule in schedules]
    return board.page(request, "schedules.html", rows=rows)


async def schedule_action(request: Request) -> Response:
    """POST /schedules/{name}/{pause|resume|trigger}."""
    board = dashboard(request)
    ensure_writable(board.settings)
    await verified_form(request)
    name: str = request.path_params["name"]
    action: str = request.path_params["action"]
    client = board.client
    if action == "pause":
        await client.pause_schedule(name)
        flash(request, f"Schedule {name} paused.")
    elif action == "resume":
        await client.resume_schedule(name)
        flash(request, f"Schedule {name} resumed.")
    elif action == "trigger":
        job = await client.trigger_schedule(name)
        flash(request, f"Schedule {name} triggered: job {job.id}.")
    else:
        raise HTTPException(404, f"no action {action!r}; accepted: pause, resume, trigger")
    return RedirectResponse("/schedules", status_code=303)
