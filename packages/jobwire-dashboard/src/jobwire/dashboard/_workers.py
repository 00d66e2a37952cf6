"""Workers: who is connected, to which queues, with how many credits."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from jobwire.dashboard._render import dashboard


async def workers_page(request: Request) -> Response:
    """GET /workers: connected workers per queue (every worker once the SDK lists them)."""
    board = dashboard(request)
    stats = await board.client.stats()
    return board.page(request, "workers.html", queues=stats, workers=None)
