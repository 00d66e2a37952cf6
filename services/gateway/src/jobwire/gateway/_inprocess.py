"""``worker.mode = "in-process"``: a worker inside the gateway process.

It is an ordinary :class:`jobwire.worker.Worker` that connects to the
gateway's own address, so it follows exactly the protocol standalone workers
do (credits, leases, drain); it only saves running a second process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from jobwire.gateway._config import WorkerSettings
from jobwire.gateway._errors import StartError, install_hint

if TYPE_CHECKING:
    from jobwire.worker import Worker

logger = logging.getLogger("jobwire.gateway")


class InProcessWorker:
    """Runs the configured handler registries against this gateway.

    Args:
        settings: The ``[worker]`` table.
        address: The gateway's own address.
        token: Bearer token of the worker when the gateway requires one.
    """

    def __init__(self, settings: WorkerSettings, address: str, token: str | None) -> None:
        try:
            from jobwire.worker import HandlerRegistry, Worker, load_registry
        except ImportError as error:
            raise StartError(
                '"in-process" needs the jobwire-worker package; '
                + install_hint("./packages/jobwire-worker"),
                key="worker.mode",
            ) from error
        registry = HandlerRegistry()
        for target in settings.handlers:
            registry.include(load_registry(target))
        self._worker: Worker = Worker(
            loopback(address),
            registry=registry,
            queues=settings.queues,
            concurrency=settings.concurrency,
            shutdown_timeout=settings.shutdown_timeout,
            token=token,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the worker on the running loop."""
        self._task = asyncio.create_task(self._worker.run(), name="jobwire-in-process-worker")
        logger.info("in-process worker %s started", self._worker.worker_id)

    async def stop(self) -> None:
        """Finish in-flight jobs (up to ``worker.shutdown_timeout``) and stop."""
        if self._task is None:
            return
        await self._worker.shutdown()
        await self._task


def loopback(address: str) -> str:
    """The address to reach the gateway on from inside its own process."""
    # A gateway listening on every interface is reached on loopback from inside.
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = "127.0.0.1"
    return f"{host}:{port}"
