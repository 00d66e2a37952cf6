"""Redis provider faults: gateways SIGKILLed, several gateways on one Redis, Redis itself killed.

Jobs live in Redis, so a gateway that dies loses nothing: the leases it held
come back once its heartbeat key lapses (``gateway_timeout``, 2 s here), taken
back by any other gateway, or by the same one started again. ``redis-server``
SIGKILLed with ``appendonly yes`` keeps every job it acknowledged: Redis
writes the AOF before it answers, and a killed process leaves what it wrote in
the OS's page cache (only a crash of the machine loses up to the last second
under ``appendfsync everysec``; see README, "Redis").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis

from jobwire.client import AsyncClient, JobRequest
from jobwire.gateway.providers.redis._keys import Keys

from fleet import Fleet, Outcome, StartGateway, settle
from redis_support import RedisServer
from sqs_support import free_port
from support import eventually
from timing import GATEWAY_DOWN as DOWN

LAPSE = 2.0
"""``gateway_timeout`` of the scenarios' gateways (``PROVIDER_DEFAULTS``)."""
GATEWAYS = Keys.of("jobwire").gateways
"""The set of gateways that may hold leases (default ``key_prefix``)."""


def jobs(count: int, seconds: float) -> list[JobRequest]:
    return [JobRequest("work", {"seconds": seconds}, max_retries=20) for _ in range(count)]


@pytest.mark.parametrize("provider_kind", ["redis"])
async def test_redis_gateway_killed_and_restarted_loses_no_job(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    port = free_port()
    gateway = start_gateway(port)
    accepted = await connect(gateway.address).enqueue_many(jobs(500, 0.005))
    for _ in range(2):
        fleet.worker(gateway.address)
    await fleet.ledger.wait_for(len(accepted) // 4)
    fleet.kill(gateway.process)
    await asyncio.sleep(DOWN)
    restarted_at = time.time()  # as for SQS: a run started before this was in flight
    gateway = start_gateway(port)

    outcome = await settle(
        connect(gateway.address),
        fleet,
        [job.id for job in accepted],
        scenario="gateway SIGKILLed and restarted",
        provider="redis",
        in_flight_at_fault=lambda run: run.started < restarted_at,
    )
    report(outcome)


@pytest.mark.parametrize("provider_kind", ["redis"])
async def test_three_gateways_on_one_redis_one_killed_lose_nothing(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    redis_url: str,
) -> None:
    gateways = [start_gateway() for _ in range(3)]
    workers = [fleet.worker(gateway.address, concurrency=4) for gateway in gateways]
    clients = [connect(gateway.address) for gateway in gateways]
    accepted: list[str] = []
    for client in clients:  # enqueued through every gateway
        batch = await client.enqueue_many(jobs(1000, 0))
        accepted.extend(job.id for job in batch)
    await fleet.ledger.wait_for(len(accepted) // 4)
    fleet.kill(gateways[1].process)
    killed_at = time.time()
    with redis.Redis.from_url(redis_url) as admin:
        # Its leases are back once no gateway it was is left in Redis.
        await eventually(lambda: admin.scard(GATEWAYS) == 2, timeout=LAPSE + 20)
    released_after = time.time() - killed_at
    victim = workers[1].pid  # its worker stays, without a gateway: what it ran was in flight

    outcome = await settle(
        clients[0],
        fleet,
        accepted,
        scenario="3 gateways on one Redis, one SIGKILLed mid-run",
        provider="redis",
        in_flight_at_fault=lambda run: run.pid == victim,
        note=f"its leases taken back {released_after:.1f} s after the kill "
        f"(gateway_timeout {LAPSE:g} s)",
    )
    report(outcome)
    assert released_after < LAPSE + 20


@pytest.mark.parametrize("provider_kind", ["redis"])
async def test_redis_sigkilled_and_restarted_with_aof_loses_no_job(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    server = RedisServer(appendonly=True)
    try:
        gateway = start_gateway(provider={"url": server.url})
        client = connect(gateway.address)
        accepted = await client.enqueue_many(jobs(1000, 0.002))
        workers = [fleet.worker(gateway.address) for _ in range(2)]
        await fleet.ledger.wait_for(len(accepted) // 4)
        fleet.faults.append(time.time())
        server.kill()
        await asyncio.sleep(DOWN)
        server.start()
        back_at = time.time()

        outcome = await settle(
            client,
            fleet,
            [job.id for job in accepted],
            scenario=f"redis-server SIGKILLed, restarted after {DOWN:g} s (AOF everysec)",
            provider="redis",
            in_flight_at_fault=lambda run: run.started < back_at,
        )
    finally:
        server.stop()
    report(outcome)
    assert all(worker.poll() is None for worker in workers)
    assert "unreachable" in (fleet.directory / "gateway.log").read_text()
