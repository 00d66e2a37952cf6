"""connect(): the health check, and failing fast when no gateway answers."""

from __future__ import annotations

import time

import pytest

from jobwire.client import AsyncClient, Client, GatewayUnavailableError
from jobwire.gateway import EmbeddedGateway, Gateway


async def test_async_connect(gateway: Gateway) -> None:
    client = await AsyncClient.connect(gateway.address, timeout=5)
    async with client:
        assert await client.stats() == []


def test_sync_connect(embedded_gateway: EmbeddedGateway) -> None:
    with Client.connect(embedded_gateway.address) as client:
        assert client.stats() == []
        assert repr(client) == f"<Client address={embedded_gateway.address!r}>"


def _assert_unreachable(error: GatewayUnavailableError, address: str) -> None:
    message = str(error)
    assert message.startswith(f"no jobwire gateway answered at {address};")
    assert "jobwire-gateway" in message


def test_sync_connect_to_a_closed_port(closed_address: str) -> None:
    started = time.monotonic()
    with pytest.raises(GatewayUnavailableError) as caught:
        Client.connect(closed_address)
    assert time.monotonic() - started < 3
    _assert_unreachable(caught.value, closed_address)


async def test_async_connect_to_a_closed_port(closed_address: str) -> None:
    started = time.monotonic()
    with pytest.raises(GatewayUnavailableError) as caught:
        await AsyncClient.connect(closed_address)
    assert time.monotonic() - started < 3
    _assert_unreachable(caught.value, closed_address)


def test_calls_to_a_closed_port_fail_after_retries(closed_address: str) -> None:
    started = time.monotonic()
    with Client(closed_address) as client, pytest.raises(GatewayUnavailableError) as caught:
        client.get_job("j1")
    assert time.monotonic() - started < 5
    _assert_unreachable(caught.value, closed_address)
