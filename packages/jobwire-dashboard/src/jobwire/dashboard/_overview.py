"""The overview: every queue's counts, throughput and depth over the last hour."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from jobwire.dashboard._charts import Chart, Series
from jobwire.dashboard._format import when
from jobwire.dashboard._monitor import Monitor
from jobwire.dashboard._render import dashboard


def charts(monitor: Monitor) -> tuple[Chart, Chart]:
    """Throughput per minute and depth over the last hour, from the monitor's history."""
    minutes = monitor.history.window(monitor.now())
    first, last = when(minutes[0].start), when(minutes[-1].start)
    throughput = Chart(
        "Jobs per minute",
        (
            Series("enqueued", tuple(m.enqueued for m in minutes)),
            Series("completed", tuple(m.completed for m in minutes)),
            Series("failed", tuple(m.failed for m in minutes)),
        ),
        first,
        last,
    )
    depth = Chart("Queue depth", (Series("depth", tuple(m.depth for m in minutes)),), first, last)
    return throughput, depth


def overview_values(monitor: Monitor) -> dict[str, Any]:
    """What the overview and its live updates render."""
    throughput, depth = charts(monitor)
    return {
        "queues": monitor.stats,
        "problem": monitor.error,
        "sampled_at": monitor.sampled_at,
        "throughput": throughput,
        "depth": depth,
    }


async def overview(request: Request) -> Response:
    """GET /: the overview."""
    board = dashboard(request)
    if board.monitor.sampled_at is None:
        await board.monitor.sample()
    return board.page(request, "overview.html", **overview_values(board.monitor))
