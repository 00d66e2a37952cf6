"""Redis provider tests: gateways on the session's ``redis-server``, emptied for each test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from integration.sqs.conftest import ClientFactory, connect

from jobwire.gateway import Gateway

from conftest import GatewayFactory

__all__ = ["ClientFactory", "RedisGateway", "connect"]

RedisGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
def redis_gateway(gateway_factory: GatewayFactory, redis_url: str) -> RedisGateway:
    """Start gateways on this test's Redis: ``await redis_gateway(server={...}, **provider)``."""

    async def start(*, server: dict[str, Any] | None = None, **provider: Any) -> Gateway:
        settings = {"type": "redis", "url": redis_url, **provider}
        return await gateway_factory(server=server or {}, provider=settings)

    return start
