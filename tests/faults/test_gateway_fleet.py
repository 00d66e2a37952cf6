"""Three gateways on one PostgreSQL database: all of them serving, and one SIGKILLed mid-run.

Each gateway has a worker process of its own. The killed gateway's worker is
stranded (it retries its gateway's address); the jobs it held are released by
the other gateways once the dead one's heartbeat lapses, and run there, each
rerun counted as an attempt. Nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from jobwire.client import AsyncClient, JobRequest

from fleet import Fleet, Outcome, StartGateway, settle, wait_finished
from support import eventually

JOBS = 600
FLEET_JOBS = 21_000
"""Jobs of the no-fault run (4,000 through each gateway): about 15 s on a busy 2-core machine."""


@pytest.mark.parametrize("provider_kind", ["postgres"])
async def test_one_of_three_gateways_killed_loses_no_job(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    gateways = [start_gateway() for _ in range(3)]
    workers = [fleet.worker(gateway.address, concurrency=4) for gateway in gateways]
    client = connect(gateways[0].address)
    accepted = await client.enqueue_many(
        JobRequest("work", {"seconds": 0.02}, max_retries=20) for _ in range(JOBS)
    )
    await fleet.ledger.wait_running(workers[2])
    await fleet.ledger.wait_for(JOBS // 4)
    fleet.kill(gateways[2].process)
    stranded = workers[2].pid

    outcome = await settle(
        client,
        fleet,
        [job.id for job in accepted],
        scenario="one of 3 gateways SIGKILLed (a worker on each)",
        provider="postgres",
        in_flight_at_fault=lambda run: run.pid == stranded,
        note="the dead gateway's leases released when its heartbeat lapsed (2 s)",
    )
    report(outcome)
    assert all(worker.poll() is None for worker in workers)


@pytest.mark.parametrize("provider_kind", ["postgres"])
async def test_three_gateways_with_a_worker_each_complete_every_job(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    gateways = [start_gateway() for _ in range(3)]
    workers = [fleet.worker(gateway.address, concurrency=8) for gateway in gateways]
    clients = [connect(gateway.address) for gateway in gateways]
    for client, worker in zip(clients, workers, strict=True):  # imported and connected

        async def connected(client: AsyncClient = client, pid: int = worker.pid) -> bool:
            return any(info.pid == pid for info in await client.list_workers())

        await eventually(connected, 30)
    started = time.monotonic()

    async def produce(client: AsyncClient) -> list[str]:
        ids: list[str] = []
        for _ in range(FLEET_JOBS // 3 // 1000):
            batch = await client.enqueue_many(JobRequest("work", {}) for _ in range(1000))
            ids.extend(job.id for job in batch)
        return ids

    batches = await asyncio.gather(*(produce(client) for client in clients))
    accepted = [i for ids in batches for i in ids]
    await wait_finished(clients[0], "default", len(accepted))
    elapsed = time.monotonic() - started
    rate = len(accepted) / elapsed
    outcome = await settle(
        clients[1],
        fleet,
        accepted,
        scenario="3 gateways on one database, a worker on each, no fault",
        provider="postgres",
        note=f"{rate:,.0f} jobs/s enqueued and completed in all ({elapsed:.1f} s)",
    )
    report(outcome)
    by_worker = {pid: 0 for pid in (worker.pid for worker in workers)}
    for runs in fleet.ledger.executions().values():
        for run in runs:
            by_worker[run.pid] += 1
    assert all(count > 0 for count in by_worker.values()), by_worker
