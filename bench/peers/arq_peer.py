"""arq, Redis, max_jobs 8; the worker runs without arq's per-job INFO logging.

arq's library defaults are kept, including ``poll_delay`` (0.5 s): an idle
worker looks for new jobs that often, which bounds its latency.
"""

from __future__ import annotations

import sys
from typing import Any

from arq import create_pool, run_worker
from arq.connections import ArqRedis, RedisSettings

from peers.common import CONCURRENCY, REDIS_URL
from peers.redis_records import RedisPeer, record_done_async, record_stamp_async


async def noop(ctx: dict[str, Any]) -> None:
    await record_done_async(ctx["redis"])


async def stamp(ctx: dict[str, Any]) -> None:
    await record_stamp_async(ctx["redis"])


REDIS = RedisSettings.from_dsn(REDIS_URL)
SETTINGS: dict[str, Any] = {
    "functions": [noop, stamp],
    "redis_settings": REDIS,
    "max_jobs": CONCURRENCY,
    "queue_name": "bench",
}


class ArqPeer(RedisPeer):
    name = "arq"
    pool: ArqRedis

    def worker_command(self) -> list[str]:
        return [sys.executable, "-m", "peers.arq_peer"]

    async def open(self) -> None:
        await super().open()
        self.pool = await create_pool(REDIS, default_queue_name="bench")

    async def close(self) -> None:
        await self.pool.aclose()
        await super().close()

    async def enqueue_noop(self) -> None:
        await self.pool.enqueue_job("noop")

    async def enqueue_stamp(self) -> None:
        await self.pool.enqueue_job("stamp")


peer = ArqPeer

if __name__ == "__main__":
    run_worker(SETTINGS)
