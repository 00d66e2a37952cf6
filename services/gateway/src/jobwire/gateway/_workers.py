"""Who is working: the worker streams of this gateway and of the gateways it shares a backend with.

Each gateway knows its own streams (the consumers of its lease state
machine). Providers that several gateways share publish them on their
:class:`~jobwire.gateway.providers.WorkerBoard` (``QueueProvider.workers``):
every ``interval`` seconds this gateway replaces its list there and picks up
the drains other gateways asked of its streams. Providers one gateway alone
uses have no board, and no loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from jobwire.gateway._errors import GatewayError, WorkerNotFoundError
from jobwire.gateway.providers import Consumer, Leases, WorkerBoard, WorkerInfo
from jobwire.gateway.providers._types import WORKER_SHARE_INTERVAL

logger = logging.getLogger("jobwire.gateway.workers")

SHARE_INTERVAL = WORKER_SHARE_INTERVAL
"""Seconds between two publications of this gateway's streams."""


class WorkerDirectory:
    """Lists and drains worker streams on every gateway of one backend.

    Args:
        board: where the backend carries streams between gateways (None: it does not).
        leases: this gateway's lease state machine (its consumers are the streams).
        interval: seconds between two publications, when the provider shares.
    """

    def __init__(
        self, board: WorkerBoard | None, leases: Leases[Any], interval: float = SHARE_INTERVAL
    ) -> None:
        self._board = board
        self._leases = leases
        self._interval = interval
        self.gateway = ""
        """This gateway's address, as ``WorkerInfo.gateway`` shows it."""
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, gateway: str) -> None:
        """Know this gateway's address; publish its streams while it runs."""
        self.gateway = gateway
        if self._board is not None:
            self._task = asyncio.create_task(self._loop(self._board), name="jobwire-workers")

    async def stop(self) -> None:
        """Stop publishing."""
        self._closing.set()
        if self._task is not None:
            await self._task

    def local(self) -> list[WorkerInfo]:
        """This gateway's streams."""
        return [self._info(consumer) for consumer in self._leases.consumers()]

    async def list(self, queue: str = "") -> list[WorkerInfo]:
        """Every stream of every gateway, this gateway's first; ``queue`` filters."""
        workers = self.local()
        if self._board is not None:
            workers += await self._board.others(self.gateway)
        return [w for w in workers if not queue or queue in w.queues]

    async def drain(self, worker_id: str, session_id: str = "") -> int:
        """Drain the worker's streams wherever they are; return how many were asked.

        Raises ``WorkerNotFoundError`` when no gateway has such a stream.
        """
        count = 0
        for consumer in list(self._leases.consumers()):
            if consumer.worker_id == worker_id and session_id in ("", consumer.session_id):
                count += 1
                if not consumer.draining:
                    consumer.on_drain()
        if self._board is not None:
            count += await self._board.request_drain(self.gateway, worker_id, session_id)
        if not count:
            raise WorkerNotFoundError(worker_id)
        return count

    async def _share(self, board: WorkerBoard) -> None:
        """Publish this gateway's streams once; drain those another gateway asked to."""
        consumers = list(self._leases.consumers())
        asked = await board.publish(self.gateway, [self._info(c) for c in consumers])
        for consumer in consumers:
            if consumer.session_id in asked and not consumer.draining:
                consumer.on_drain()

    async def _loop(self, board: WorkerBoard) -> None:
        while not self._closing.is_set():
            try:
                await self._share(board)
            except GatewayError as error:
                logger.warning("publishing this gateway's workers failed: %s", error)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._closing.wait()
        with contextlib.suppress(GatewayError):
            await board.publish(self.gateway, [])

    def _info(self, consumer: Consumer) -> WorkerInfo:
        return WorkerInfo(
            worker_id=consumer.worker_id,
            session_id=consumer.session_id,
            gateway=self.gateway,
            host=consumer.host,
            pid=consumer.pid,
            sdk=consumer.sdk,
            queues=consumer.queues,
            job_types=tuple(sorted(consumer.job_types)),
            credits=consumer.credits,
            in_flight=self._leases.in_use(consumer),
            completed=consumer.completed,
            failed=consumer.failed,
            connect_time=consumer.connect_time,
            last_seen_time=consumer.last_seen_time,
            labels=dict(consumer.labels),
            draining=consumer.draining,
        )
