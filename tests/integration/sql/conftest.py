"""SQL provider tests: gateways on the session's PostgreSQL database or a SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest
from integration.sqs.conftest import Client, ClientFactory

from jobwire.gateway import Gateway

from conftest import GatewayFactory

SqlGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def postgres_gateway(gateway_factory: GatewayFactory, queue_database_url: str) -> SqlGateway:
    """Start gateways on this test's (emptied) database: ``await postgres_gateway(**provider)``.

    ``queues`` is the gateway's ``[queues.NAME]`` tables.
    """

    async def start(
        *,
        server: dict[str, Any] | None = None,
        queues: dict[str, Any] | None = None,
        **provider: Any,
    ) -> Gateway:
        settings = {"type": "postgres", "database_url": queue_database_url, **provider}
        return await gateway_factory(server=server or {}, provider=settings, queues=queues or {})

    return start


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """Open clients of gateways; channels and workers are closed after the test."""
    async with AsyncExitStack() as stack:

        async def open_client(gateway: Gateway) -> Client:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(gateway.address))
            return Client(channel, stack)

        yield open_client
