"""Fixtures for worker SDK tests against a real gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest

from jobwire.gateway import Gateway
from jobwire.worker import Backoff, HandlerRegistry, Worker

StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture
async def start_worker(gateway: Gateway) -> AsyncIterator[StartWorker]:
    """Start workers with ``async with``, on ``gateway`` unless ``target=`` is given.

    Every worker started is shut down when the test ends.
    """
    async with AsyncExitStack() as stack:

        async def start(registry: HandlerRegistry, **kwargs: Any) -> Worker:
            kwargs.setdefault("target", gateway.address)
            kwargs.setdefault("shutdown_timeout", 5)
            kwargs.setdefault("reconnect", Backoff(maximum=timedelta(seconds=0.5)))
            worker = Worker(kwargs.pop("target"), registry=registry, **kwargs)
            return await stack.enter_async_context(worker)

        yield start
