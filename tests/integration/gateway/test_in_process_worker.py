"""``worker.mode = "in-process"`` runs the configured handlers inside the gateway."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobwire.client import AsyncClient
from jobwire.gateway.testing import settings_for_tests

from conftest import GatewayFactory


async def test_in_process_worker_completes_jobs(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(
        worker={
            "mode": "in-process",
            "handlers": ["integration.gateway.inprocess_jobs:registry"],
            "concurrency": 2,
        }
    )
    async with AsyncClient(gateway.address) as client:
        job = await client.enqueue("add", {"a": 2, "b": 3})
        assert await job.wait(timeout=10) == 5
        [stats] = await client.stats("default")
        assert stats.workers == 1


def test_in_process_mode_needs_handlers() -> None:
    with pytest.raises(ValidationError, match="needs handlers"):
        settings_for_tests(worker={"mode": "in-process"})


async def test_unknown_handler_module_fails_the_start(gateway_factory: GatewayFactory) -> None:
    with pytest.raises(Exception, match="no_such_module"):
        await gateway_factory(
            worker={"mode": "in-process", "handlers": ["no_such_module:registry"]}
        )
