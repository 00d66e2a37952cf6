"""What the Redis peers' handlers record, and the producer side reading it."""

from __future__ import annotations

import time
from typing import cast

import redis
import redis.asyncio

from peers.common import REDIS_URL, Peer

DONE = "bench:done"  # no-op jobs finished
FIRST = "bench:first"  # time.time() at the start of the first no-op handler
STAMPS = "bench:stamps"  # time.time() at the start of each stamp handler


def client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def record_done(connection: redis.Redis) -> None:
    started = time.time()
    if connection.incr(DONE) == 1:
        connection.set(FIRST, started)


def record_stamp(connection: redis.Redis) -> None:
    connection.rpush(STAMPS, time.time())


async def record_done_async(connection: redis.asyncio.Redis) -> None:
    started = time.time()
    if await connection.incr(DONE) == 1:
        await connection.set(FIRST, started)


async def record_stamp_async(connection: redis.asyncio.Redis) -> None:
    await connection.rpush(STAMPS, time.time())


def reachable() -> str | None:
    """None if Redis answers, else how to start it."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError as error:
        return (
            f"Redis not reachable at {REDIS_URL} ({error}); start it with "
            '`redis-server --daemonize yes --port 6379 --save "" --appendonly no`'
        )
    return None


class RedisPeer(Peer):
    """A peer on Redis: records read with one client, database 15 emptied per run."""

    backend = "Redis"

    def __init__(self) -> None:
        self.redis = client()

    async def open(self) -> None:
        self.redis.flushdb()

    async def close(self) -> None:
        self.redis.close()

    async def reset(self) -> None:
        self.redis.delete(DONE, FIRST, STAMPS)

    async def done(self) -> tuple[int, float | None]:
        done, first = cast("list[bytes | None]", self.redis.mget(DONE, FIRST))
        return int(done or 0), float(first) if first else None

    async def stamp(self) -> float:
        await self.enqueue_stamp()
        popped = cast("tuple[bytes, bytes] | None", self.redis.blpop([STAMPS], timeout=10))
        if popped is None:
            raise TimeoutError(f"{self.name}: stamp job did not start within 10 s")
        return float(popped[1])

    async def enqueue_stamp(self) -> None:
        raise NotImplementedError

    def broker_pid(self) -> int | None:
        return int(self.redis.info("server")["process_id"])
