"""The dashboard's shared state and page rendering (Jinja2, autoescaped)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader
from starlette.requests import Request
from starlette.responses import HTMLResponse

from jobwire.client import AsyncClient, JobState
from jobwire.dashboard import _format
from jobwire.dashboard._monitor import Monitor
from jobwire.dashboard._security import CSRF_FIELD, csrf_token
from jobwire.dashboard._settings import DashboardSettings

_FLASH_KEY = "flash"


def environment() -> Environment:
    """The Jinja2 environment of the templates: every value is HTML-escaped."""
    env = Environment(
        loader=PackageLoader("jobwire.dashboard", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(age=_format.age, when=_format.when, iso=_format.iso)
    env.globals.update(body=_format.body, states=list(JobState), csrf_field=CSRF_FIELD)
    return env


@dataclass
class Dashboard:
    """What every view needs: settings, the SDK client, the stats monitor, templates."""

    settings: DashboardSettings
    client: AsyncClient
    monitor: Monitor
    env: Environment

    def context(self, request: Request, **values: Any) -> dict[str, Any]:
        """The values every template sees, plus `values`."""
        return {
            "request": request,
            "csrf": csrf_token(request),
            "read_only": self.settings.read_only,
            "login_required": self.settings.login_required,
            "gateway": self.settings.gateway,
            **values,
        }

    def fragment(self, name: str, request: Request, **values: Any) -> str:
        """Renders the template `name` to a string (a live update's HTML)."""
        return self.env.get_template(name).render(self.context(request, **values))

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        """Renders the page `name`, with the flash messages left for it."""
        flashes = request.session.pop(_FLASH_KEY, []) if "session" in request.scope else []
        html = self.fragment(name, request, flashes=flashes, **values)
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def dashboard(request: Request) -> Dashboard:
    """The `Dashboard` of the app serving `request`."""
    state: Dashboard = request.app.state.dashboard
    return state


def flash(request: Request, message: str) -> None:
    """Leaves `message` for the next page this session sees."""
    request.session[_FLASH_KEY] = [*request.session.get(_FLASH_KEY, []), message]
