"""Three gateways on one PostgreSQL database, one of them SIGKILLed mid-run.

Each gateway has a worker process of its own. The killed gateway's worker is
stranded (it retries its gateway's address); the jobs it held are released by
the other gateways once the dead one's heartbeat lapses, and run there, each
rerun counted as an attempt. Nothing accepted is lost.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobwire.client import AsyncClient, JobRequest

from fleet import Fleet, Outcome, StartGateway, settle

JOBS = 600


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
