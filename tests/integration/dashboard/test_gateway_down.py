"""A dashboard whose gateway does not answer says so on every page, with no traceback."""

from __future__ import annotations

import socket

from starlette.testclient import TestClient

from jobwire.dashboard import DashboardSettings, create_app


def closed_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_pages_say_the_gateway_is_unavailable() -> None:
    address = closed_address()
    settings = DashboardSettings(gateway=address, poll_interval=60)
    with TestClient(create_app(settings)) as dashboard:
        overview = dashboard.get("/")
        assert overview.status_code == 200
        assert "The gateway did not answer" in overview.text
        jobs = dashboard.get("/jobs")
        assert jobs.status_code == 503
        assert "UNAVAILABLE" in jobs.text
        assert address in jobs.text
        assert "Traceback" not in jobs.text
