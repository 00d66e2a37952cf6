"""Redis provider faults: gateways SIGKILLed, several gateways on one Redis, Redis itself killed.

Three gateway processes on one Redis, a worker on each, run 20,000 jobs
enqueued through all three while one gateway is SIGKILLed; in another
scenario jobs are cancelled through a gateway other than the one whose worker
runs them, and deduplication keys are enqueued through all three at once.

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

from fleet import Fleet, Outcome, StartGateway, settle, wait_finished
from redis_support import RedisServer
from sqs_support import free_port
from support import eventually
from timing import GATEWAY_DOWN as DOWN

LAPSE = 2.0
"""``gateway_timeout`` of the scenarios' gateways (``PROVIDER_DEFAULTS``)."""
GATEWAYS = Keys.of("jobwire").gateways
"""The set of gateways that may hold leases (default ``key_prefix``)."""
FLEET_JOBS = 20_000
"""Jobs of the three-gateway scenario, a third enqueued through each gateway."""
BATCH = 1000
"""Jobs per ``enqueue_many`` call."""
HELD = 150
"""Jobs held until cancelled in the cancel scenario: more than the workers' 3 x 32 credits."""
CONCURRENCY = 8
"""jobwire-worker's default concurrency: the jobs each worker runs at once."""
KEYS = 300
"""Deduplication keys of the cancel and dedup scenario."""
FLEET_WITHIN = 120.0
"""Seconds the three-gateway scenario's jobs may take on a busy machine (about 10 idle)."""


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
    workers = [fleet.worker(gateway.address) for gateway in gateways]
    clients = [connect(gateway.address) for gateway in gateways]
    started = time.monotonic()

    async def enqueue(first: int) -> list[str]:
        ids: list[str] = []
        for _ in range(first, FLEET_JOBS // BATCH, len(clients)):
            ids.extend(job.id for job in await clients[first].enqueue_many(jobs(BATCH, 0)))
        return ids

    # Enqueued through every gateway at once, while every worker runs.
    batches = await asyncio.gather(*map(enqueue, range(len(clients))))
    accepted = [job_id for ids in batches for job_id in ids]
    await fleet.ledger.wait_for(len(accepted) // 4, timeout=FLEET_WITHIN)
    fleet.kill(gateways[1].process)
    killed_at = time.time()
    with redis.Redis.from_url(redis_url) as admin:
        # Its leases are back once no gateway it was is left in Redis.
        await eventually(lambda: admin.scard(GATEWAYS) == 2, timeout=LAPSE + 20)
    released_after = time.time() - killed_at
    victim = workers[1].pid  # its worker stays, without a gateway: what it ran was in flight
    await wait_finished(clients[0], "default", len(accepted), within=FLEET_WITHIN)
    rate = len(accepted) / (time.monotonic() - started)

    outcome = await settle(
        clients[0],
        fleet,
        accepted,
        scenario="3 gateways on one Redis, one SIGKILLed mid-run",
        provider="redis",
        in_flight_at_fault=lambda run: run.pid == victim,
        note=f"its leases taken back {released_after:.1f} s after the kill "
        f"(gateway_timeout {LAPSE:g} s); {rate:,.0f} jobs/s from the first enqueue "
        "to the last completion",
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


@pytest.mark.parametrize("provider_kind", ["redis"])
async def test_cancel_and_dedup_across_three_gateways(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    # A key stays taken a while after its job finished: the jobs run as they come.
    gateways = [start_gateway(provider={"dedup_window": 600}) for _ in range(3)]
    clients = [connect(gateway.address) for gateway in gateways]
    workers = [fleet.worker(gateway.address) for gateway in gateways]
    served_by = {worker.pid: n for n, worker in enumerate(workers)}
    # Jobs that run until cancelled: every worker's slots and credits fill with them.
    held = [job.id for job in await clients[0].enqueue_many(jobs(HELD, 3600))]
    await fleet.ledger.wait_for(len(workers) * CONCURRENCY)
    running = {job_id: runs[0].pid for job_id, runs in fleet.ledger.executions().items()}

    def through(n: int, job_id: str) -> AsyncClient:
        """Not the gateway whose worker runs the job, if one does."""
        return clients[(served_by[running[job_id]] + 1) % 3 if job_id in running else n % 3]

    await asyncio.gather(*(through(n, i).cancel_job(i, reason="stop") for n, i in enumerate(held)))
    # Each key enqueued through the three gateways at once, in different orders:
    # one job per key. The jobs run only if the cancelled handlers were stopped.
    keys = [f"key-{n}" for n in range(KEYS)]
    orders = [keys, keys[::-1], keys[KEYS // 2 :] + keys[: KEYS // 2]]
    answers = await asyncio.gather(
        *(
            client.enqueue_many(
                JobRequest("work", {}, deduplication_key=key, max_retries=20) for key in order
            )
            for client, order in zip(clients, orders, strict=True)
        )
    )
    by_key: dict[str, set[str]] = {}
    for order, batch in zip(orders, answers, strict=True):
        for key, job in zip(order, batch, strict=True):
            by_key.setdefault(key, set()).add(job.id)
    assert all(len(ids) == 1 for ids in by_key.values()), "a key got two jobs"

    outcome = await settle(
        clients[1],
        fleet,
        [job_id for ids in by_key.values() for job_id in ids],
        cancelled=held,
        scenario="cancel and dedup across 3 gateways, a worker on each",
        provider="redis",
        note=f"{len(held)} jobs cancelled, {len(running)} of them while running, each through "
        f"another gateway than its worker's; {KEYS} keys, each enqueued through all 3 at once: "
        f"{KEYS} jobs",
    )
    report(outcome)
    assert set(running.values()) == set(served_by)  # every worker ran some of them
    assert all(worker.poll() is None for worker in workers)
