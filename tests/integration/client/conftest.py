"""Clients against real gateways."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import pytest

from jobwire.client import AsyncClient, Client
from jobwire.gateway import EmbeddedGateway, Gateway


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(gateway.address) as async_client:
        yield async_client


@pytest.fixture
def sync_client(embedded_gateway: EmbeddedGateway) -> Iterator[Client]:
    with Client(embedded_gateway.address) as blocking_client:
        yield blocking_client


@pytest.fixture
def closed_address() -> str:
    """An address where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"127.0.0.1:{port}"
