"""Server-sent events: the overview after every stats sample, a job after every change.

Each event's data is an HTML fragment rendered (and escaped) here; the page's
script puts it in the element whose `data-live` names the event. An `end`
event tells the page that nothing more will come, so it stops listening
rather than reconnecting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from jobwire.client import JobwireError
from jobwire.dashboard._job import attempts
from jobwire.dashboard._overview import overview_values
from jobwire.dashboard._render import dashboard

_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def event(name: str, data: str) -> str:
    """One event in the `text/event-stream` format; each line of `data` a `data:` field."""
    lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"event: {name}\n{lines}\n"


async def overview_events(request: Request) -> Response:
    """GET /events/overview: the queues table and charts after every sample."""
    board = dashboard(request)

    async def stream() -> AsyncIterator[str]:
        version = -1
        while True:
            version = await board.monitor.changed(version)
            values = overview_values(board.monitor)
            yield event("queues", board.fragment("_queues.html", request, **values))
            yield event("charts", board.fragment("_charts.html", request, **values))

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)


async def job_events(request: Request) -> Response:
    """GET /jobs/{id}/events: the job's state, progress and outcome until it finishes."""
    board = dashboard(request)
    job_id: str = request.path_params["job_id"]

    async def stream() -> AsyncIterator[str]:
        try:
            changes = board.client.watch_job(job_id)
            try:
                async for change in changes:
                    job = change
                    if change.state.is_terminal:
                        # The watch carries the state; the result comes with the job.
                        job = await board.client.get_job(job_id)
                    html = board.fragment(
                        "_job_live.html", request, job=job, attempts=attempts(job)
                    )
                    yield event("job", html)
            finally:
                # An async generator: close its gRPC stream now, not at garbage collection.
                await changes.aclose()  # type: ignore[attr-defined]
        except JobwireError as error:
            yield event("problem", board.fragment("_problem.html", request, problem=str(error)))
        yield event("end", "")

    return StreamingResponse(stream(), media_type="text/event-stream", headers=_HEADERS)
