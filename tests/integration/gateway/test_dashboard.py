"""``[dashboard] listen``: the dashboard served by the gateway process."""

from __future__ import annotations

import socket

import httpx2
import pytest
from pydantic import ValidationError

from jobwire.client import AsyncClient
from jobwire.gateway.auth import hash_token
from jobwire.gateway.testing import settings_for_tests

from conftest import GatewayFactory

LOCAL = {"listen": "127.0.0.1:0"}


async def test_the_gateway_serves_its_dashboard(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(dashboard=LOCAL)
    async with AsyncClient(gateway.address) as client:
        await client.enqueue("report:build", {}, queue="in-process")
    async with httpx2.AsyncClient(base_url=f"http://{gateway.dashboard_address}") as http:
        page = await http.get("/jobs", params={"queue": "in-process"})
    assert page.status_code == 200
    assert page.text.count('data-job="') == 1


async def test_with_auth_the_dashboard_has_a_token_of_its_own(
    gateway_factory: GatewayFactory,
) -> None:
    auth = {"enabled": True, "tokens": [{"role": "admin", "sha256": hash_token("a-token")}]}
    gateway = await gateway_factory(server={"auth": auth}, dashboard=LOCAL)
    async with httpx2.AsyncClient(base_url=f"http://{gateway.dashboard_address}") as http:
        page = await http.get("/schedules")
    assert page.status_code == 200
    assert "No schedule." in page.text


async def test_read_only_reaches_the_dashboard(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(dashboard={**LOCAL, "read_only": True})
    async with httpx2.AsyncClient(base_url=f"http://{gateway.dashboard_address}") as http:
        page = await http.get("/schedules")
    assert "read-only" in page.text


async def test_off_by_default(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory()
    assert gateway.dashboard_address == ""


async def test_a_taken_port_fails_the_start(gateway_factory: GatewayFactory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await gateway_factory(dashboard={"listen": f"127.0.0.1:{port}"})


def test_beyond_loopback_a_password_is_required() -> None:
    with pytest.raises(ValidationError, match=r"dashboard\.listen|needs a login: set password"):
        settings_for_tests(dashboard={"listen": "0.0.0.0:8080"})
    settings = settings_for_tests(dashboard={"listen": "0.0.0.0:8080", "password": "pw"})
    assert settings.dashboard.password is not None


def test_not_with_tls() -> None:
    tls = {"cert": __file__, "key": __file__}
    with pytest.raises(ValidationError, match=r"cannot be combined with \[server.tls\]"):
        settings_for_tests(server={"tls": tls}, dashboard=LOCAL)
