"""What the ``jobwire`` command prints: rich tables for people, one JSON document for scripts.

Every command returns an :class:`Output` holding both; ``--json`` picks the
document. Job ids are never cut: a narrow terminal wraps or drops other
columns instead, since an id is what the next command needs.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from jobwire.client._models import Job
from jobwire.client._queue_stats import QueueStats
from jobwire.client._schedules import Schedule

_PREVIEW = 300  # characters of a payload or result shown by `jobwire job`


@dataclass(frozen=True, slots=True)
class Output:
    """A command's answer: ``data`` for ``--json``, ``view`` for the terminal."""

    data: Any
    view: RenderableType

    def json(self) -> str:
        """``data`` as one JSON document."""
        return json.dumps(jsonable(self.data), indent=2, ensure_ascii=False)


def jsonable(value: Any) -> Any:
    """``value`` with jobs, schedules, times and spans turned into JSON types."""
    if isinstance(value, Job):
        return _job_document(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: jsonable(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith(("_", "raw_"))
        }
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    return value


def _job_document(job: Job) -> dict[str, Any]:
    fields = {
        f.name: jsonable(getattr(job, f.name))
        for f in dataclasses.fields(job)
        if not f.name.startswith(("_", "raw_"))
    }
    fields["payload"] = _decoded(job.raw_payload, lambda: job.payload)
    fields["result"] = (
        None if job.raw_result is None else _decoded(job.raw_result, lambda: job.result)
    )
    return fields


def _decoded(raw: bytes, decode: Any) -> Any:
    try:
        return jsonable(decode())
    except Exception:  # a payload the serializer cannot read is shown as bytes
        return jsonable(raw)


def _when(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else "-"


def jobs_table(jobs: Iterable[Job], width: int) -> Table:
    """Jobs one a row; ids stay whole.

    Narrower terminals drop ``created`` (below 120 columns), then ``queue``
    (100), then ``attempt`` (80), and wrap the rest.
    """
    columns = ["id", "type", "queue", "state", "attempt", "created", "last error"]
    dropped = {"created": 120, "queue": 100, "attempt": 80}
    shown = [c for c in columns if width >= dropped.get(c, 0)]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    for name in shown:
        if name == "id":
            table.add_column(name, no_wrap=True, min_width=32)
        else:
            table.add_column(name, overflow="fold", no_wrap=name in ("state", "attempt"))
    for job in jobs:
        values = {
            "id": job.id,
            "type": job.type,
            "queue": job.queue,
            "state": job.state.value,
            "attempt": _attempts(job),
            "created": _when(job.create_time),
            "last error": job.last_error.message if job.last_error else "",
        }
        table.add_row(*(values[name] for name in shown))
    return table


def _attempts(job: Job) -> str:
    # Attempts so far of the most the job may get: its first plus max_retries.
    return f"{job.attempt}/{job.max_retries + 1}"


def job_view(job: Job) -> Table:
    """Every field of one job, a line each."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("id", job.id),
        ("queue", job.queue),
        ("type", job.type),
        ("state", job.state.value),
        ("attempt", f"{_attempts(job)} (max_retries {job.max_retries})"),
        ("created", _when(job.create_time)),
        ("scheduled", _when(job.schedule_time)),
        ("updated", _when(job.update_time)),
        ("ended", _when(job.end_time)),
        ("timeout", f"{job.timeout.total_seconds():g}s" if job.timeout else "-"),
        ("worker", job.worker_id or "-"),
        ("schedule", job.schedule or "-"),
        ("deduplication key", job.deduplication_key or "-"),
        ("concurrency key", job.concurrency_key or "-"),
        ("waiting for", job.waiting_reason or "-"),
        ("attributes", ", ".join(f"{k}={v}" for k, v in job.attributes.items()) or "-"),
        ("progress", _progress(job)),
        ("last error", _failure(job)),
        ("result", "-" if job.raw_result is None else _preview(job.raw_result, lambda: job.result)),
        ("payload", _preview(job.raw_payload, lambda: job.payload)),
        ("content type", job.content_type or "-"),
    ]
    for name, value in rows:
        grid.add_row(name, Text(value))
    return grid


def _progress(job: Job) -> str:
    progress = job.progress
    if progress is None:
        return "-"
    done = f"{progress.current:g}/{progress.total:g}" if progress.total else f"{progress.current:g}"
    return f"{done} {progress.message}".strip()


def _failure(job: Job) -> str:
    failure = job.last_error
    if failure is None:
        return "-"
    kind = f"{failure.type}: " if failure.type else ""
    retry = "" if failure.retryable else " (not retryable)"
    return f"{kind}{failure.message}{retry} [attempt {failure.attempt}]"


def _preview(raw: bytes, decode: Any) -> str:
    if not raw:
        return "-"
    try:
        text = json.dumps(jsonable(decode()), ensure_ascii=False)
    except Exception:  # undecodable: say what it is rather than fail the command
        text = f"{len(raw)} bytes"
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def stats_table(rows: Iterable[QueueStats], width: int) -> RenderableType:
    """Counts per queue, with the pending types no connected worker takes.

    A table from 120 columns; below, one paragraph per queue.
    """
    columns = ("pending", "scheduled", "processing", "completed", "failed", "dead", "cancelled")
    lines: list[dict[str, str]] = [
        {
            "queue": row.queue,
            **{column: str(getattr(row, column)) for column in columns},
            "oldest pending": str(timedelta(seconds=round(row.oldest_pending_age.total_seconds()))),
            "workers": str(row.workers),
            "no worker for": ", ".join(row.unserved_types) or "-",
        }
        for row in rows
    ]
    if width < 120:
        return Group(
            *(
                Text(" · ".join(f"{k} {v}" if k != "queue" else v for k, v in line.items()))
                for line in lines
            )
        )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    for name in ("queue", *columns, "oldest pending", "workers", "no worker for"):
        table.add_column(name, overflow="fold")
    for line in lines:
        table.add_row(*line.values())
    return table


def schedules_table(schedules: Iterable[Schedule]) -> Table:
    """Schedules one a row."""
    table = Table(
        "name",
        "type",
        "queue",
        "timetable",
        "time zone",
        "next run",
        "last run",
        "state",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for s in schedules:
        state = "paused" if s.paused else ("error: " + s.last_error if s.last_error else "active")
        table.add_row(
            s.name,
            s.type,
            s.queue,
            s.every,
            s.time_zone,
            _when(s.next_run_time),
            _when(s.last_run_time),
            state,
        )
    return table
