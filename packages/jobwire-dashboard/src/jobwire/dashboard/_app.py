"""The Starlette application: routes, sessions, login, errors, and the stats poller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobwire.client import AsyncClient, JobwireError, StatusCode
from jobwire.dashboard import (
    _dead,
    _job,
    _jobs,
    _live,
    _login,
    _operations,
    _overview,
    _schedules,
    _workers,
)
from jobwire.dashboard._monitor import Monitor
from jobwire.dashboard._render import Dashboard, dashboard, environment
from jobwire.dashboard._security import LoginRequired
from jobwire.dashboard._settings import DashboardSettings

# How a gateway's answer reads as an HTTP status on a page.
_STATUS = {
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.FAILED_PRECONDITION: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.UNAUTHENTICATED: 502,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DEADLINE_EXCEEDED: 504,
}


async def _gateway_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, JobwireError)
    status = _STATUS.get(error.code, 502)
    return dashboard(request).page(
        request, "error.html", status=status, title=error.code.name, message=str(error)
    )


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return dashboard(request).page(
        request,
        "error.html",
        status=error.status_code,
        title=str(error.status_code),
        message=error.detail,
    )


def _routes() -> list[Route | Mount]:
    return [
        Route("/", _overview.overview),
        Route("/events/overview", _live.overview_events),
        Route("/jobs", _jobs.jobs_page),
        Route("/jobs/bulk", _jobs.bulk_action, methods=["POST"]),
        Route("/jobs/purge", _operations.purge, methods=["POST"]),
        Route("/jobs/{job_id}", _job.job_page),
        Route("/jobs/{job_id}/events", _live.job_events),
        Route("/jobs/{job_id}/cancel", _job.cancel, methods=["POST"]),
        Route("/jobs/{job_id}/copy", _job.enqueue_copy, methods=["POST"]),
        Route("/jobs/{job_id}/retry", _operations.retry, methods=["POST"]),
        Route("/dead", _dead.dead_page),
        Route("/dead/replay", _operations.replay_group, methods=["POST"]),
        Route("/queues/{queue}/{action}", _operations.queue_action, methods=["POST"]),
        Route("/schedules", _schedules.schedules_page),
        Route("/schedules/{name}/{action}", _schedules.schedule_action, methods=["POST"]),
        Route("/workers", _workers.workers_page),
        Route("/workers/{worker_id}/drain", _operations.drain, methods=["POST"]),
        Route("/login", _login.login_page),
        Route("/login", _login.login, methods=["POST"]),
        Route("/logout", _login.logout, methods=["POST"]),
        Mount("/static", StaticFiles(packages=[("jobwire.dashboard", "static")]), name="static"),
    ]


def create_app(settings: DashboardSettings) -> Starlette:
    """Builds the dashboard for `settings`; it connects to the gateway on startup.

    Args:
        settings: The gateway to show and who may use the dashboard.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = AsyncClient(settings.gateway, token=settings.token)
        monitor = Monitor(client, settings.poll_interval)
        app.state.dashboard = Dashboard(settings, client, monitor, environment())
        poller = asyncio.create_task(monitor.run(), name="jobwire-dashboard-poller")
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await client.aclose()

    return Starlette(
        routes=_routes(),
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=settings.secret_key,
                session_cookie="jobwire_dashboard",
                same_site="strict",
            ),
            Middleware(LoginRequired, settings=settings),
        ],
        exception_handlers={JobwireError: _gateway_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
