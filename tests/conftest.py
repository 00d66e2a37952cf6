"""Shared fixtures: real gateways on 127.0.0.1 with free ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest

from jobwire.gateway import EmbeddedGateway, Gateway
from jobwire.gateway.testing import running_gateway, test_settings

from support import Producer, RawWorker

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
async def gateway(gateway_factory: GatewayFactory, request: pytest.FixtureRequest) -> Gateway:
    """A fresh gateway with the memory provider.

    ``@pytest.mark.gateway(server={...}, provider={...})`` overrides settings.
    """
    marker = request.node.get_closest_marker("gateway")
    return await gateway_factory(**(marker.kwargs if marker else {}))


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


@pytest.fixture
def producer(channel: grpc.aio.Channel) -> Producer:
    """QueueService helper on ``channel``."""
    return Producer(channel)


@pytest.fixture
async def raw_worker(
    channel: grpc.aio.Channel,
) -> AsyncIterator[Callable[..., Awaitable[RawWorker]]]:
    """Open raw worker streams on ``channel``; all are dropped after the test."""
    opened: list[RawWorker] = []

    async def open_stream(**open_fields: Any) -> RawWorker:
        worker = await RawWorker(channel, **open_fields).open()
        opened.append(worker)
        return worker

    yield open_stream
    for worker in opened:
        worker.drop()
