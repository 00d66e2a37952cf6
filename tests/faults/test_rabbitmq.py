"""RabbitMQ provider faults: a gateway SIGKILLed, the broker's connections closed, 3 gateways.

Jobs live in the broker (and their records in the gateways' database), so a
gateway that dies loses nothing: its connection drops, the broker requeues
every message its channels held unacked at once, and whichever gateway
receives one next counts the lost attempt. ``rabbitmqctl
close_all_connections`` does to every gateway what a broker restart does:
their channels and leases are gone, they reconnect, and the worker streams
(gRPC, to the gateways) stay connected throughout.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable

import pytest

from jobwire.client import AsyncClient, JobRequest
from jobwire.gateway.providers.rabbitmq import TABLES

from fleet import Fleet, Outcome, StartGateway, settle
from postgres import emptied_url
from rabbitmq_support import RabbitVhost
from support import eventually

HELD = 4
"""Jobs mid-run on the worker of the gateway the first scenario kills."""
STALLING = JobRequest("first_attempt_stalls", {"seconds": 3600}, max_retries=20)
GATEWAYS_JOBS = 3_000
"""Jobs of the three-gateway scenario (see README, "Fault suite")."""


def jobs(count: int, seconds: float) -> list[JobRequest]:
    return [JobRequest("work", {"seconds": seconds}, max_retries=20) for _ in range(count)]


@pytest.fixture
def shared_records(queue_database: str) -> dict[str, str]:
    """Job records several gateways share: the session's PostgreSQL database, emptied."""
    return {"database_url": emptied_url(queue_database, list(TABLES.metadata.tables))}


@pytest.mark.parametrize("provider_kind", ["rabbitmq"])
async def test_rabbitmq_gateway_killed_its_unacked_jobs_come_back_counted(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    shared_records: dict[str, str],
) -> None:
    survivor = start_gateway(provider=shared_records)
    doomed = start_gateway(provider=shared_records)
    client = connect(survivor.address)
    stranded = fleet.worker(doomed.address, concurrency=8)
    await connected(connect(doomed.address))
    # Jobs certain to be mid-run on the doomed gateway's worker when it dies:
    # taken while that worker is the only one, their first attempt never ends.
    held = [job.id for job in await client.enqueue_many(STALLING for _ in range(HELD))]
    await eventually(lambda: set(held) <= ran_by(fleet, stranded), timeout=60)
    fleet.worker(survivor.address, concurrency=4)
    accepted = [job.id for job in await client.enqueue_many(jobs(1000, 0.02))]
    await fleet.ledger.wait_for(len(accepted) // 4)
    fleet.kill(doomed.process)
    assert stranded.pid is not None

    outcome = await settle(
        client,
        fleet,
        [*held, *accepted],
        scenario="one of 2 gateways SIGKILLed (a worker on each)",
        provider="rabbitmq",
        in_flight_at_fault=lambda run: run.pid == stranded.pid,
        note="the broker requeued the dead gateway's unacked messages when its connection dropped",
    )
    report(outcome)
    runs = fleet.ledger.executions()
    assert all(len(runs[job_id]) == 2 for job_id in held), {i: runs[i] for i in held}
    assert outcome.duplicates >= HELD  # those ran again, each counted


def ran_by(fleet: Fleet, worker: subprocess.Popen[bytes]) -> set[str]:
    """The jobs ``worker`` started so far."""
    runs = fleet.ledger.executions()
    return {job_id for job_id, each in runs.items() if any(r.pid == worker.pid for r in each)}


@pytest.mark.parametrize("provider_kind", ["rabbitmq"])
async def test_rabbitmq_connections_closed_gateways_reconnect_and_lose_nothing(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    shared_records: dict[str, str],
    rabbitmq_vhost: RabbitVhost,
) -> None:
    gateways = [start_gateway(provider=shared_records) for _ in range(2)]
    workers = [fleet.worker(gateway.address, concurrency=4) for gateway in gateways]
    client = connect(gateways[0].address)
    for gateway in gateways:
        await connected(connect(gateway.address))
    accepted = await client.enqueue_many(jobs(2000, 0.01))
    await fleet.ledger.wait_for(len(accepted) // 4)
    closed_at = time.time()
    fleet.faults.append(closed_at)
    await asyncio.to_thread(rabbitmq_vhost.close_connections, "jobwire fault test")
    more = await enqueue_while_reconnecting(client, 200)

    outcome = await settle(
        client,
        fleet,
        [*(job.id for job in accepted), *more],
        scenario="`rabbitmqctl close_all_connections` mid-run (2 gateways)",
        provider="rabbitmq",
        in_flight_at_fault=lambda run: run.started < closed_at + 5,
        note="gateways reconnected; workers stayed connected",
    )
    report(outcome)
    assert all(worker.poll() is None for worker in workers)
    assert all(gateway.process.poll() is None for gateway in gateways)


async def connected(client: AsyncClient) -> None:
    """Wait until a worker stream is open on the gateway ``client`` talks to."""

    async def one() -> bool:
        stats = await client.stats("default")
        return bool(stats) and stats[0].workers >= 1

    await eventually(one, timeout=60)


async def enqueue_while_reconnecting(client: AsyncClient, count: int) -> list[str]:
    """Enqueue ``count`` jobs once the gateway answers again (UNAVAILABLE while away)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return [job.id for job in await client.enqueue_many(jobs(count, 0.01))]
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("provider_kind", ["rabbitmq"])
async def test_three_gateways_on_one_broker_one_killed_lose_no_job(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    shared_records: dict[str, str],
) -> None:
    gateways = [start_gateway(provider=shared_records) for _ in range(3)]
    workers = [fleet.worker(gateway.address, concurrency=4) for gateway in gateways]
    clients = [connect(gateway.address) for gateway in gateways]
    for each in clients:
        await connected(each)
    accepted: list[str] = []
    for n in range(GATEWAYS_JOBS // 500):  # producers on every gateway
        accepted += [job.id for job in await clients[n % 3].enqueue_many(jobs(500, 0.005))]
    await fleet.ledger.wait_running(workers[2])
    await fleet.ledger.wait_for(len(accepted) // 4, timeout=60)
    fleet.kill(gateways[2].process)
    stranded = workers[2].pid

    outcome = await settle(
        clients[0],
        fleet,
        accepted,
        scenario="3 gateways on one broker, a worker on each, one gateway SIGKILLed",
        provider="rabbitmq",
        in_flight_at_fault=lambda run: run.pid == stranded,
        note="its unacked messages requeued by the broker at once",
    )
    report(outcome)
    assert all(worker.poll() is None for worker in workers)
