"""The login page (beyond loopback) and logging out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from jobwire.dashboard._render import dashboard
from jobwire.dashboard._security import check_login, log_in, log_out, safe_next, verified_form


async def login_page(request: Request) -> Response:
    """GET /login."""
    return dashboard(request).page(
        request, "login.html", next=safe_next(request.query_params.get("next"))
    )


async def login(request: Request) -> Response:
    """POST /login: the password (or the gateway token) opens a session."""
    board = dashboard(request)
    form = await verified_form(request)
    target = safe_next(str(form.get("next", "/")))
    if not check_login(board.settings, str(form.get("password", ""))):
        return board.page(request, "login.html", status=401, next=target, wrong=True)
    log_in(request)
    return RedirectResponse(target, status_code=303)


async def logout(request: Request) -> Response:
    """POST /logout."""
    await verified_form(request)
    log_out(request)
    return RedirectResponse("/login", status_code=303)
