"""Workers: every connected worker stream, and the workers of each queue."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from jobwire.dashboard._render import dashboard


async def workers_page(request: Request) -> Response:
    """GET /workers."""
    client = dashboard(request).client
    workers = await client.list_workers()
    workers.sort(key=lambda worker: (worker.worker_id, worker.session_id))
    stats = await client.stats()
    return dashboard(request).page(request, "workers.html", workers=workers, queues=stats)
