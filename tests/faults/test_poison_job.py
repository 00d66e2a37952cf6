"""A job that crashes its worker process every time it runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobwire.client import AsyncClient, JobRequest, JobState

from fleet import PROVIDERS, Fleet, Outcome, StartGateway, settle, wait_finished
from timing import PerProvider

JOBS = PerProvider.of_each(400, sqs=80)
MAX_RETRIES = 2


@PROVIDERS
async def test_a_poison_job_goes_dead_and_the_fleet_keeps_going(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    provider_kind: str,
) -> None:
    gateway = start_gateway()
    client = connect(gateway.address)
    jobs = [
        JobRequest("work", {"seconds": 0.02}, max_retries=20) for _ in range(JOBS.of(provider_kind))
    ]
    accepted = await client.enqueue_many(jobs[: len(jobs) // 2])
    poison = await client.enqueue("poison", max_retries=MAX_RETRIES)
    accepted += await client.enqueue_many(jobs[len(jobs) // 2 :])
    workers = [fleet.worker(gateway.address) for _ in range(2)]
    crashed: set[int] = set()

    async def supervise() -> None:
        """Replace each worker process that died, as systemd or Kubernetes would."""
        while True:
            for index, worker in enumerate(workers):
                if worker.poll() is not None:
                    crashed.add(worker.pid)
                    workers[index] = fleet.worker(gateway.address)
            await asyncio.sleep(0.05)

    supervisor = asyncio.create_task(supervise())
    try:
        await wait_finished(client, "default", len(accepted) + 1)
    finally:
        supervisor.cancel()
    poison_runs = fleet.ledger.executions()[poison.id]
    fleet.faults.extend(run.started for run in poison_runs)  # each run crashed its process

    outcome = await settle(
        client,
        fleet,
        [job.id for job in accepted],
        scenario=f"poison job (max_retries {MAX_RETRIES}) crashing its worker",
        provider=provider_kind,
        dead=[poison.id],
        in_flight_at_fault=lambda run: run.pid in crashed,
        note=f"{len(crashed)} worker crashes",
    )
    report(outcome)
    dead = await client.get_job(poison.id)
    assert dead.state == JobState.DEAD
    assert dead.attempt == len(poison_runs) == MAX_RETRIES + 1
    assert {run.pid for run in poison_runs} <= crashed
