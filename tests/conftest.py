"""Shared fixtures: real gateways on 127.0.0.1 with free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest

from jobwire.gateway import EmbeddedGateway, Gateway
from jobwire.gateway.testing import running_gateway, test_settings

GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """Start gateways with config overrides, e.g. ``await gateway_factory(server={...})``.

    Every gateway started is stopped when the test ends.
    """
    async with AsyncExitStack() as stack:

        async def start(**sections: Any) -> Gateway:
            return await stack.enter_async_context(running_gateway(**sections))

        yield start


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> Gateway:
    """A fresh gateway with the memory provider and default settings."""
    return await gateway_factory()


@pytest.fixture
def embedded_gateway() -> Iterator[EmbeddedGateway]:
    """A gateway on its own thread and loop, for sync code and sync tests."""
    with EmbeddedGateway(test_settings()) as embedded:
        yield embedded


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    """An async channel to ``gateway``."""
    async with grpc.aio.insecure_channel(gateway.address) as chan:
        yield chan
