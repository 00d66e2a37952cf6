"""Fixtures of the flow control tests: SDK workers on the test's gateway, runs recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest
from integration.flow.flow_support import Recorder, StartWorkers

from jobwire.gateway import Gateway
from jobwire.worker import Backoff, Worker


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def start_workers(gateway: Gateway, recorder: Recorder) -> AsyncIterator[StartWorkers]:
    """Start ``count`` SDK workers on ``gateway`` running the recorder's handlers.

    Every worker is shut down when the test ends.
    """
    async with AsyncExitStack() as stack:

        async def start(count: int, queues: Sequence[str], **kwargs: Any) -> list[Worker]:
            kwargs.setdefault("shutdown_timeout", 5)
            kwargs.setdefault("reconnect", Backoff(maximum=timedelta(seconds=0.5)))
            return [
                await stack.enter_async_context(
                    Worker(gateway.address, registry=recorder.registry, queues=queues, **kwargs)
                )
                for _ in range(count)
            ]

        yield start
