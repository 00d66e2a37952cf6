"""Workers SIGKILLed while they hold leases: their jobs run again elsewhere, none is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobwire.client import AsyncClient, JobRequest

from fleet import PROVIDERS, Fleet, Outcome, StartGateway, settle
from support import eventually
from timing import PerProvider

BATCH = PerProvider.of_each(2000, sqs=200, postgres=500, sqlite=500)
"""Jobs per scenario: moto serves SQS calls at a few hundred a second."""
SECONDS = PerProvider.of_each(0.01, sqs=0.05)
"""How long each job runs: a batch lasts a few seconds, long enough to crash in."""
CREDITS = 32  # jobwire-worker's default max_in_flight at concurrency 8


def batch(kind: str) -> list[JobRequest]:
    payload = {"seconds": SECONDS.of(kind)}
    return [JobRequest("work", payload, max_retries=20) for _ in range(BATCH.of(kind))]


@PROVIDERS
async def test_a_worker_killed_in_the_middle_of_a_batch(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    provider_kind: str,
) -> None:
    gateway = start_gateway()
    client = connect(gateway.address)
    accepted = await client.enqueue_many(batch(provider_kind))
    doomed = fleet.worker(gateway.address)
    fleet.worker(gateway.address)
    await fleet.ledger.wait_for(len(accepted) // 4)
    fleet.kill(doomed)

    outcome = await settle(
        client,
        fleet,
        [job.id for job in accepted],
        scenario="worker SIGKILLed mid-batch",
        provider=provider_kind,
    )
    report(outcome)
    assert outcome.duplicates <= CREDITS  # at most what it had leased


@PROVIDERS
async def test_a_worker_killed_every_300_ms_while_another_keeps_going(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    provider_kind: str,
) -> None:
    gateway = start_gateway()
    client = connect(gateway.address)
    accepted = await client.enqueue_many(batch(provider_kind))
    fleet.worker(gateway.address, concurrency=2)  # the steady one, slow enough to outlast

    async def crash_a_worker() -> bool:
        """Start a worker, SIGKILL it 300 ms into its work; False if the batch ended first."""
        victim = fleet.worker(gateway.address)
        await eventually(  # a new worker takes a while to import
            lambda: victim.pid in fleet.ledger.pids() or fleet.ledger.count() >= len(accepted),
            timeout=30,
        )
        if victim.pid not in fleet.ledger.pids():
            return False
        await asyncio.sleep(0.3)
        fleet.kill(victim)
        return True

    kills = 0
    while kills < 20 and await crash_a_worker():
        kills += 1

    outcome = await settle(
        client,
        fleet,
        [job.id for job in accepted],
        scenario=f"a worker SIGKILLed every 300 ms ({kills} times), another steady",
        provider=provider_kind,
    )
    report(outcome)
    assert kills >= 2
    assert outcome.duplicates <= kills * CREDITS
