"""Flow control on Redis across gateways: limits read by every claim script, lanes made on the fly.

The flow suite (``tests/integration/flow``) runs the rules on one gateway of
every provider that enforces them; these tests check what only Redis does:
a queue's ready jobs moving into lanes when it first gets limits, and limits
set through one gateway holding for the claims of another at once.
"""

from __future__ import annotations

import asyncio

from integration.flow.flow_support import configure, enqueue_all
from integration.redis.conftest import ClientFactory, RedisGateway

from support import RawWorker
from timing import FRAME_TIMEOUT, QUIET

Leased = tuple[RawWorker, str]
"""The stream a job was delivered to, and its lease id."""


async def test_ready_jobs_keep_their_order_when_their_queue_gets_limits(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    a = await connect(await redis_gateway())
    b = await connect(await redis_gateway())
    ids = await enqueue_all(a.producer, "batch", [""] * 6)
    # Set through B, honoured by A's claims (each reads the limits in Redis).
    await configure(b.producer, "batch", "max_concurrency", max_concurrency=2)
    worker = await a.worker(queues=["batch"], job_types=["work"], max_in_flight=6)
    order: list[str] = []
    while len(order) < len(ids):
        items = await worker.jobs(2)
        await worker.nothing("delivery", QUIET)  # the limit: 2 at a time
        order += [item.job.id for item in items]
        await worker.ack(*(item.lease_id for item in items))
    assert order == ids


async def delivered(streams: tuple[RawWorker, ...], count: int) -> dict[str, Leased]:
    """The next ``count`` jobs delivered to any of ``streams``: by job id, stream and lease."""
    taken: dict[str, Leased] = {}
    async with asyncio.timeout(FRAME_TIMEOUT):
        while len(taken) < count:
            for stream in streams:
                try:
                    items = await stream.jobs(1, timeout=0.05)
                except TimeoutError:
                    continue
                taken.update({item.job.id: (stream, item.lease_id) for item in items})
    return taken


async def test_a_key_limit_holds_across_gateways_and_a_freed_slot_serves_either(
    redis_gateway: RedisGateway, connect: ClientFactory
) -> None:
    a = await connect(await redis_gateway())
    b = await connect(await redis_gateway())
    await configure(a.producer, "reports", "max_concurrency_per_key", max_concurrency_per_key=1)
    streams = (
        await a.worker(queues=["reports"], job_types=["work"], max_in_flight=5),
        await b.worker(queues=["reports"], job_types=["work"], max_in_flight=5),
    )
    first, second = await enqueue_all(a.producer, "reports", ["customer-7"] * 2)
    [other] = await enqueue_all(b.producer, "reports", ["customer-8"])
    taken = await delivered(streams, 2)
    assert set(taken) == {first, other}  # one job of each key, whichever gateway
    for stream in streams:
        await stream.nothing("delivery", QUIET)
    stream, lease = taken[first]
    await stream.ack(lease)
    # customer-7's slot is free: its next job goes to whichever stream claims it.
    assert set(await delivered(streams, 1)) == {second}
