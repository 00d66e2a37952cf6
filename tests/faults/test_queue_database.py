"""PostgreSQL drops the queue's connections (every backend terminated) again and again.

Two gateways on the postgres provider, a worker process on each, jobs
enqueued through both while every backend of the queue's database is
terminated every half second: the gateways reconnect (their pools, their
``LISTEN`` connections), no accepted job is lost, and the workers keep the
streams they opened before the first fault (a stream that dropped would show
as a new session, and its jobs would run twice).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from jobwire.client import AsyncClient, JobRequest

from fleet import Fleet, Outcome, StartGateway, settle
from postgres import terminate_connections
from support import eventually

JOBS = 1_200
BATCH = 100
TERMINATIONS = 8
EVERY = 0.5  # seconds between terminations


@pytest.mark.parametrize("provider_kind", ["postgres"])
async def test_gateways_reconnect_and_lose_nothing_when_the_database_drops_them(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    queue_database: str,
) -> None:
    # A long poll: a gateway that stopped listening would be seen waiting for it.
    gateways = [start_gateway(provider={"poll_interval": 30}) for _ in range(2)]
    clients = [connect(gateway.address) for gateway in gateways]
    workers = [fleet.worker(gateway.address, concurrency=4) for gateway in gateways]
    for client, worker in zip(clients, workers, strict=True):  # imported and connected

        async def connected(client: AsyncClient = client, pid: int = worker.pid) -> bool:
            return await _has_pid(client, pid)

        await eventually(connected, 30.0)
    accepted = [
        job.id
        for job in await clients[0].enqueue_many(
            JobRequest("work", {"seconds": 0.005}) for _ in range(BATCH)
        )
    ]
    sessions = await _sessions(clients)
    assert {pid for pid, _ in sessions} == {worker.pid for worker in workers}

    terminated = 0

    async def terminate() -> None:
        nonlocal terminated
        for _ in range(TERMINATIONS):
            await asyncio.sleep(EVERY)
            fleet.faults.append(time.time())
            terminated += await asyncio.to_thread(terminate_connections, queue_database)

    terminator = asyncio.create_task(terminate())
    try:
        n = 1
        while len(accepted) < JOBS:  # the jobs flow in, through both, while backends die
            batch = await clients[n % 2].enqueue_many(
                JobRequest("work", {"seconds": 0.005}) for _ in range(BATCH)
            )
            accepted.extend(job.id for job in batch)
            n += 1
            await asyncio.sleep(0.1)
    finally:
        await terminator

    outcome = await settle(
        clients[0],
        fleet,
        accepted,
        scenario=f"PostgreSQL backends terminated {TERMINATIONS} times under 2 gateways",
        provider="postgres",
        # The workers stay connected: no run is lost, so none runs twice.
        in_flight_at_fault=lambda run: False,
        note=f"{terminated} connections dropped; a worker on each gateway",
    )
    report(outcome)
    assert terminated >= TERMINATIONS  # the gateways did hold connections to drop
    assert all(worker.poll() is None for worker in workers)
    assert await _sessions(clients) == sessions  # the streams of before the faults

    # The second gateway listens again: a job enqueued through the first wakes
    # its idle worker at once (a missed NOTIFY would wait for the 30 s poll).
    listener = fleet.worker(gateways[1].address, "--queue", "late")

    async def listening() -> bool:
        return await _has_pid(clients[1], listener.pid)

    await eventually(listening, 30.0)
    late = await clients[0].enqueue_many(JobRequest("work", {}, queue="late") for _ in range(5))
    await eventually(lambda: all(fleet.ledger.executions().get(job.id) for job in late), 10.0)


async def _has_pid(client: AsyncClient, pid: int) -> bool:
    return any(worker.pid == pid for worker in await client.list_workers())


async def _sessions(clients: list[AsyncClient]) -> set[tuple[int, str]]:
    """(pid, session id) of the worker streams each gateway holds itself."""
    found: set[tuple[int, str]] = set()
    for client in clients:
        for worker in await client.list_workers():
            found.add((worker.pid, worker.session_id))
    return found
