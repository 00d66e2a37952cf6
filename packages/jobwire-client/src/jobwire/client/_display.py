"""How jobs, queue statistics and schedules show in notebooks and in pandas.

`_repr_html_` renders compact tables with a colour per job state; every value
that comes from users or handlers (ids, types, payloads, messages, names) is
escaped, so a job cannot inject markup into the notebook that displays it.
`to_pandas` builds data frames, importing pandas only when it is called.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobwire.client import _rich
from jobwire.client._job_lists import JobList, JobPage
from jobwire.client._models import Job, JobProgress
from jobwire.client._queue_stats import QueueStats, QueueStatsList
from jobwire.client._schedules import Schedule, ScheduleList
from jobwire.client._text import count_text, duration_text, shorten, state_summary

if TYPE_CHECKING:
    import pandas as pd

#: Background colour of each job state's badge (white text reads on all of them).
STATE_COLOURS: Mapping[str, str] = {
    "pending": "#6b7280",
    "scheduled": "#7c3aed",
    "processing": "#2563eb",
    "completed": "#15803d",
    "failed": "#c2410c",
    "dead": "#b91c1c",
    "cancelled": "#374151",
}
#: Rows an HTML table shows; the rest are counted in its last row.
MAX_ROWS = 50

_CELL = "padding:2px 8px;text-align:left;vertical-align:top;white-space:nowrap"
_WRAP = "padding:2px 8px;text-align:left;vertical-align:top"
_BADGE = "color:#fff;border-radius:3px;padding:0 5px;background:{}"
_TABLE = "border-collapse:collapse;font-size:12px;margin:2px 0"
_PANDAS_HINT = (
    "pip install pandas (from the repository root: pip install './packages/jobwire-client[pandas]')"
)


# Text pieces, shared by the HTML and the progress bar.


def progress_text(progress: JobProgress) -> str:
    """A handler's progress in a few words, e.g. "45% resizing" or "3/? resizing"."""
    fraction = progress.fraction
    amount = f"{fraction:.0%}" if fraction is not None else f"{progress.current:g}/?"
    # Short: it follows the counts on the progress bar's single line.
    return f"{amount} {shorten(progress.message, 60)}".rstrip()


def _when(value: datetime | None, zone: str = "UTC") -> str:
    if value is None:
        return ""
    try:
        local = value.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        local = value.astimezone(UTC)
    suffix = "" if zone == "UTC" else " %Z"
    return local.strftime(f"%Y-%m-%d %H:%M:%S{suffix}")


def _decoded(job: Job, which: Literal["payload", "result"]) -> str:
    try:
        return shorten(repr(getattr(job, which)))
    except Exception:
        # A display never raises: bytes that do not decode are described instead.
        if which == "payload":
            raw, content_type = job.raw_payload, job.content_type
        else:
            raw, content_type = job.raw_result or b"", job.result_content_type or job.content_type
        return f"{len(raw)} bytes ({content_type or 'no content type'})"


def _failure(job: Job) -> str:
    failure = job.last_error
    if failure is None:
        return ""
    kind = f"{failure.type}: " if failure.type else ""
    return shorten(f"{kind}{failure.message}")


# HTML


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def badge(label: str, colour: str | None = None) -> str:
    """An HTML badge; a job state's colour unless `colour` is given."""
    colour = colour or STATE_COLOURS.get(label, STATE_COLOURS["pending"])
    return f'<span style="{_BADGE.format(colour)}">{_e(label)}</span>'


def _row(cells: Iterable[str], tag: str = "td") -> str:
    return "<tr>" + "".join(f'<{tag} style="{_CELL}">{cell}</{tag}>' for cell in cells) + "</tr>"


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, caption: str, notes: Sequence[str] = ()
) -> str:
    """An HTML table; `header` and `rows` are cells of HTML, escaped by the caller."""
    shown = rows[:MAX_ROWS]
    parts = [
        f'<table class="jobwire" style="{_TABLE}">',
        f'<caption style="text-align:left;font-weight:bold">{_e(caption)}</caption>',
        "<thead>" + _row(header, tag="th") + "</thead><tbody>",
        *(_row(cells) for cells in shown),
    ]
    hidden = len(rows) - len(shown)
    extra = [f"… {hidden} more not shown; to_pandas() has them all"] if hidden else []
    for note in (*extra, *notes):
        parts.append(f'<tr><td colspan="{len(header)}" style="{_WRAP}"><i>{_e(note)}</i></td></tr>')
    parts.append("</tbody></table>")
    return "".join(parts)


_JOB_HEADER = ("id", "type", "queue", "state", "attempt", "created (UTC)", "progress", "last error")


def _job_cells(job: Job) -> list[str]:
    return [
        f"<code>{_e(job.id)}</code>",
        _e(job.type),
        _e(job.queue),
        badge(job.state.value),
        _e(job.attempt),
        _e(_when(job.create_time)),
        _e(progress_text(job.progress) if job.progress else ""),
        _e(_failure(job)),
    ]


def jobs_html(jobs: Sequence[Job], *, notes: Sequence[str] = ()) -> str:
    """A table of jobs, one per row, captioned with their count by state."""
    summary = state_summary(Counter(job.state.value for job in jobs))
    caption = count_text(len(jobs), "job") + (f": {summary}" if summary else "")
    return _table(_JOB_HEADER, [_job_cells(job) for job in jobs], caption=caption, notes=notes)


def job_html(job: Job) -> str:
    """One job as a two-column table of its fields; empty fields are left out."""
    fields: list[tuple[str, str]] = [
        ("state", badge(job.state.value)),
        ("type", _e(job.type)),
        ("queue", _e(job.queue)),
        ("attempt", _e(f"{job.attempt} of {job.max_retries + 1}")),
        ("created", _e(_when(job.create_time))),
        ("scheduled for", _e(_when(job.schedule_time))),
        ("updated", _e(_when(job.update_time))),
        ("ended", _e(_when(job.end_time))),
        ("progress", _e(progress_text(job.progress) if job.progress else "")),
        ("worker", _e(job.worker_id or "")),
        ("schedule", _e(job.schedule or "")),
        ("deduplication key", _e(job.deduplication_key or "")),
        ("attributes", _e(", ".join(f"{k}={v}" for k, v in job.attributes.items()))),
        ("payload", _e(_decoded(job, "payload") if job.raw_payload else "")),
        ("result", _e(_decoded(job, "result") if job.raw_result is not None else "")),
        ("last error", _e(_failure(job))),
    ]
    rows = [[f"<b>{name}</b>", value] for name, value in fields if value]
    return _table(("field", "value"), rows, caption=f"Job {job.id} (times in UTC)")


_STAT_COUNTS = ("pending", "scheduled", "processing", "completed", "failed", "dead", "cancelled")


def stats_html(rows: Sequence[QueueStats]) -> str:
    """Counts per queue; the header of each state count is in the state's colour."""
    # The state names are fixed text: the badges need no escaping of user data.
    header = ("queue", *map(badge, _STAT_COUNTS), "oldest pending", "workers")
    cells = [
        [
            f"<b>{_e(row.queue)}</b>",
            *(_e(getattr(row, count)) for count in _STAT_COUNTS),
            _e(duration_text(row.oldest_pending_age) if row.oldest_pending_age else ""),
            _e(row.workers),
        ]
        for row in rows
    ]
    return _table(header, cells, caption=f"queue statistics ({count_text(len(rows), 'queue')})")


def _schedule_state(schedule: Schedule) -> str:
    if schedule.paused:
        return badge("paused", STATE_COLOURS["pending"])
    if schedule.last_error:
        return f"{badge('error', STATE_COLOURS['dead'])} {_e(shorten(schedule.last_error))}"
    return badge("active", STATE_COLOURS["completed"])


_SCHEDULE_COLUMNS = ("name", "type", "queue", "timetable", "time zone", "next run", "last run")


def schedules_html(schedules: Sequence[Schedule]) -> str:
    """A table of schedules; run times are shown in each schedule's own time zone."""
    rows = [
        [
            f"<b>{_e(s.name)}</b>",
            _e(s.type),
            _e(s.queue),
            _e(s.every),
            _e(s.time_zone),
            _e(_when(s.next_run_time, s.time_zone)),
            _e(_when(s.last_run_time, s.time_zone)),
            _schedule_state(s),
        ]
        for s in schedules
    ]
    header = (*_SCHEDULE_COLUMNS, "state")
    return _table(header, rows, caption=count_text(len(schedules), "schedule"))


# pandas


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as error:
        raise ImportError(f"to_pandas() needs pandas: {_PANDAS_HINT}") from error
    return pandas


def _frame(records: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame: pd.DataFrame = _pandas().DataFrame.from_records(records, columns=list(columns))
    return frame


JOB_FRAME_COLUMNS = (
    "id",
    "type",
    "queue",
    "state",
    "attempt",
    "max_retries",
    "create_time",
    "schedule_time",
    "update_time",
    "end_time",
    "progress",
    "progress_message",
    "last_error",
    "last_error_type",
    "worker_id",
    "schedule",
    "deduplication_key",
)


def jobs_frame(jobs: Iterable[Job]) -> pd.DataFrame:
    """One row per job; `progress` is the handler's fraction done (None when unknown)."""
    records = [
        {
            "id": job.id,
            "type": job.type,
            "queue": job.queue,
            "state": job.state.value,
            "attempt": job.attempt,
            "max_retries": job.max_retries,
            "create_time": job.create_time,
            "schedule_time": job.schedule_time,
            "update_time": job.update_time,
            "end_time": job.end_time,
            "progress": job.progress.fraction if job.progress else None,
            "progress_message": job.progress.message if job.progress else None,
            "last_error": job.last_error.message if job.last_error else None,
            "last_error_type": job.last_error.type if job.last_error else None,
            "worker_id": job.worker_id,
            "schedule": job.schedule,
            "deduplication_key": job.deduplication_key,
        }
        for job in jobs
    ]
    return _frame(records, JOB_FRAME_COLUMNS)


STATS_FRAME_COLUMNS = ("queue", *_STAT_COUNTS, "oldest_pending_age", "workers")


def stats_frame(rows: Iterable[QueueStats]) -> pd.DataFrame:
    """One row per queue."""
    records = [{column: getattr(row, column) for column in STATS_FRAME_COLUMNS} for row in rows]
    return _frame(records, STATS_FRAME_COLUMNS)


SCHEDULE_FRAME_COLUMNS = (
    "name",
    "type",
    "queue",
    "cron",
    "interval",
    "time_zone",
    "paused",
    "next_run_time",
    "last_run_time",
    "last_error",
    "last_job_id",
    "description",
)


def schedules_frame(schedules: Iterable[Schedule]) -> pd.DataFrame:
    """One row per schedule; times are UTC."""
    records = [
        {column: getattr(schedule, column) for column in SCHEDULE_FRAME_COLUMNS}
        for schedule in schedules
    ]
    return _frame(records, SCHEDULE_FRAME_COLUMNS)


# What the models' `_repr_html_` and `to_pandas` return (see `_rich`).

_rich.html.register(Job, job_html)
_rich.html.register(QueueStats, lambda stats: stats_html([stats]))
_rich.html.register(Schedule, lambda schedule: schedules_html([schedule]))
_rich.html.register(QueueStatsList, stats_html)
_rich.html.register(ScheduleList, schedules_html)
_rich.frame.register(JobList, lambda jobs: jobs_frame(jobs.jobs))
_rich.frame.register(QueueStatsList, stats_frame)
_rich.frame.register(ScheduleList, schedules_frame)


@_rich.html.register
def _job_list_html(jobs: JobList) -> str:
    return jobs_html(jobs.jobs)


@_rich.html.register
def _job_page_html(page: JobPage) -> str:
    notes = [f"more pages: list_jobs(page_token={page.next_page_token!r})"]
    return jobs_html(page.jobs, notes=notes if page.next_page_token else ())
