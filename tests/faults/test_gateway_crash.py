"""The gateway SIGKILLed in the middle of a run and started again on the same port.

With SQS and RabbitMQ the jobs live in the broker and the records database
(a dead gateway's unacked messages requeued by the broker when its connection
drops), with PostgreSQL and
SQLite in their table: nothing accepted is lost. The memory provider is
volatile by design (README, "Providers"): what it held is gone, and the
scenario shows that the same worker processes reconnect and jobs accepted
after the restart flow again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from jobwire.client import AsyncClient, JobRequest

from fleet import Fleet, Outcome, StartGateway, settle
from sqs_support import free_port
from support import eventually
from timing import GATEWAY_DOWN as DOWN


@pytest.mark.parametrize("provider_kind", ["sqs", "rabbitmq", "postgres", "sqlite"])
async def test_durable_gateway_killed_and_restarted_loses_no_job(
    provider_kind: str,
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    port = free_port()
    gateway = start_gateway(port)
    accepted = await connect(gateway.address).enqueue_many(
        JobRequest("work", {"seconds": 0.05}, max_retries=20) for _ in range(200)
    )
    for _ in range(2):
        fleet.worker(gateway.address)
    await fleet.ledger.wait_for(len(accepted) // 4)
    fleet.kill(gateway.process)
    await asyncio.sleep(DOWN)
    # No gateway runs until now, so a run that started before this had its job
    # from the killed one: in flight at the fault, even if it started after the
    # kill (a worker's waiting jobs start until it sees the stream is gone).
    restarted_at = time.time()
    gateway = start_gateway(port)

    outcome = await settle(
        connect(gateway.address),
        fleet,
        [job.id for job in accepted],
        scenario="gateway SIGKILLed and restarted",
        provider=provider_kind,
        in_flight_at_fault=lambda run: run.started < restarted_at,
    )
    report(outcome)


async def test_memory_gateway_killed_and_restarted_serves_new_jobs(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    port = free_port()
    gateway = start_gateway(port)
    before = await connect(gateway.address).enqueue_many(
        JobRequest("work", {"seconds": 0.01}) for _ in range(1000)
    )
    workers = [fleet.worker(gateway.address) for _ in range(2)]
    await fleet.ledger.wait_for(len(before) // 4)
    fleet.kill(gateway.process)
    unfinished = len(before) - len(fleet.ledger.executions())
    await asyncio.sleep(DOWN)
    gateway = start_gateway(port)
    client = connect(gateway.address)

    async def both_reconnected() -> bool:  # the same processes, on their own
        stats = await client.stats("default")
        return bool(stats) and stats[0].workers == len(workers)

    await eventually(both_reconnected, timeout=30)
    after = await client.enqueue_many(JobRequest("work", {"seconds": 0.01}) for _ in range(1000))

    outcome = await settle(
        client,
        fleet,
        [job.id for job in after],
        scenario="gateway SIGKILLed and restarted: jobs accepted after the restart",
        provider="memory",
        note=f"volatile by design: {unfinished} of the {len(before)} jobs before the kill gone",
    )
    report(outcome)
    assert all(worker.poll() is None for worker in workers)
