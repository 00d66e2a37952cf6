"""Worker streams shared between the gateways of one Redis (``ListWorkers``, ``DrainWorker``).

Each gateway replaces its streams every ``WORKER_SHARE_INTERVAL`` seconds
(``share.lua``): a hash per gateway address of JSON rows by session id, and
the address in a sorted set by when it last did, so a gateway that died
without saying so drops out of the listing after ``WORKER_FRESHNESS``. A
drain asked through another gateway is a session id in the owner's drain
set, picked up at its next share.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, cast

from redis.asyncio import Redis

from jobwire.gateway.providers._types import WORKER_FRESHNESS, WorkerInfo
from jobwire.gateway.providers.redis._errors import translated
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._scripts import Scripts

_STALE = 60 * WORKER_FRESHNESS
"""Seconds after which a silent gateway's rows are deleted (not only hidden)."""


class SharedWorkers:
    """The provider's :class:`~jobwire.gateway.providers.base.WorkerBoard`.

    Args:
        client: the provider's client.
        scripts: the provider's scripts (``share.lua``).
        keys: the key layout.
    """

    def __init__(self, client: Redis, scripts: Scripts, keys: Keys) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys

    async def publish(self, gateway: str, workers: Sequence[WorkerInfo]) -> set[str]:
        """Replace ``gateway``'s streams; return the sessions asked to drain."""
        now = time.time()
        args: list[Any] = [self._keys.prefix, gateway, repr(now), repr(now - _STALE)]
        for worker in workers:
            args += [worker.session_id, json.dumps(worker.as_json())]
        with translated():
            asked = await self._scripts.share(keys=[self._keys.seq], args=args)
        return {session.decode() for session in asked}

    async def others(self, gateway: str) -> list[WorkerInfo]:
        """Streams the other gateways published within ``WORKER_FRESHNESS``."""
        return [worker for _, worker in await self._fresh(gateway)]

    async def request_drain(self, gateway: str, worker_id: str, session_id: str) -> int:
        """Ask the owners of the worker's streams (one session if set) to drain them."""
        chosen = [
            (owner, worker)
            for owner, worker in await self._fresh(gateway)
            if worker.worker_id == worker_id and session_id in ("", worker.session_id)
        ]
        if chosen:
            with translated():
                async with self._client.pipeline(transaction=False) as pipe:
                    for owner, worker in chosen:
                        pipe.sadd(self._keys.drain(owner), worker.session_id)
                    await pipe.execute()
        return len(chosen)

    async def _fresh(self, gateway: str) -> list[tuple[str, WorkerInfo]]:
        """Other gateways' fresh streams, each with the address it was published under."""
        with translated():
            names = cast(
                list[bytes],
                await self._client.zrangebyscore(
                    self._keys.worker_gateways, time.time() - WORKER_FRESHNESS, "+inf"
                ),
            )
            owners = [name.decode() for name in names if name.decode() != gateway]
            async with self._client.pipeline(transaction=False) as pipe:
                for owner in owners:
                    pipe.hgetall(self._keys.workers(owner))
                    pipe.smembers(self._keys.drain(owner))
                replies = await pipe.execute()
        found = []
        for owner, rows, asked in zip(owners, replies[::2], replies[1::2], strict=True):
            for session, row in cast(dict[bytes, bytes], rows).items():
                found.append((owner, WorkerInfo.from_json(json.loads(row), session in asked)))
        return found
