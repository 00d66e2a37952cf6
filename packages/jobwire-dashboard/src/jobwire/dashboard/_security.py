"""Login beyond loopback, CSRF tokens on every form, and read-only mode.

Sessions are Starlette's signed cookies (`SessionMiddleware`); the CSRF token
is the synchronizer-token pattern: one random token per session, rendered in
every form and compared in constant time on every POST.
"""

from __future__ import annotations

import secrets
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from jobwire.dashboard._settings import DashboardSettings

CSRF_FIELD = "csrf_token"
_CSRF_KEY = "csrf"
_USER_KEY = "user"
# Reachable without a login: the login page itself and the stylesheet it uses.
_PUBLIC = ("/login", "/static/")


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get(_CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_CSRF_KEY] = token
    return token


async def verified_form(request: Request) -> FormData:
    """The POSTed form, once its CSRF token matches the session's.

    Raises:
        HTTPException: 403 when the token is missing or wrong.
    """
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.session.get(_CSRF_KEY)
    if (
        not isinstance(sent, str)
        or not isinstance(expected, str)
        or not secrets.compare_digest(sent.encode(), expected.encode())
    ):
        raise HTTPException(403, "missing or wrong CSRF token: reload the page and try again")
    return form


def ensure_writable(settings: DashboardSettings) -> None:
    """Refuses a state change in read-only mode.

    Raises:
        HTTPException: 403 in read-only mode.
    """
    if settings.read_only:
        raise HTTPException(403, "the dashboard is read-only (--read-only)")


def check_login(settings: DashboardSettings, password: str) -> bool:
    """Whether `password` is the configured password or the gateway token."""
    return any(
        secrets.compare_digest(password.encode(), secret.encode()) for secret in settings.secrets
    )


def log_in(request: Request) -> None:
    """Marks the session logged in, with a fresh CSRF token (no session fixation)."""
    request.session.clear()
    request.session[_USER_KEY] = "operator"
    csrf_token(request)


def log_out(request: Request) -> None:
    """Forgets the session."""
    request.session.clear()


def logged_in(request: Request) -> bool:
    """Whether the session has logged in."""
    return request.session.get(_USER_KEY) == "operator"


def safe_next(target: str | None) -> str:
    """A local path to go back to after the login; never another site."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


class LoginRequired:
    """ASGI middleware: every page but the login page needs a logged-in session.

    Sits inside `SessionMiddleware`, which puts the session in the scope.
    """

    def __init__(self, app: ASGIApp, *, settings: DashboardSettings) -> None:
        self._app = app
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._settings.login_required:
            await self._app(scope, receive, send)
            return
        request = Request(scope)
        if logged_in(request) or request.url.path.startswith(_PUBLIC):
            await self._app(scope, receive, send)
            return
        if request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            response: RedirectResponse | PlainTextResponse = RedirectResponse(
                f"/login?next={quote(target, safe='')}", status_code=303
            )
        else:
            response = PlainTextResponse("log in first: GET /login", status_code=401)
        await response(scope, receive, send)
