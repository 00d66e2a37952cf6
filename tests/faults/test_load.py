"""Load: 20 workers connecting and disconnecting at random while 20,000 jobs flow.

Memory provider only: moto serves a few hundred SQS calls a second, so 20,000
jobs through it would take minutes (the SQS scenarios run smaller batches).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from jobwire.client import AsyncClient, JobRequest

from fleet import Fleet, Outcome, StartGateway, settle
from support import eventually

JOBS = 20_000
WORKERS = 20
CHURN = 0.5  # seconds between two random disconnections
PEAK_RSS_BOUND_MIB = 512  # far above what it needs: a leak per job or per stream would cross it


async def test_20_churning_workers_run_20000_jobs_in_bounded_memory(
    fleet: Fleet,
    start_gateway: StartGateway,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    gateway = start_gateway()
    client = connect(gateway.address)
    rng = random.Random(7)  # not security: a reproducible churn
    workers = [fleet.worker(gateway.address, concurrency=4) for _ in range(WORKERS)]
    disconnects = 0

    async def churn() -> None:
        nonlocal disconnects
        while True:
            await asyncio.sleep(CHURN)
            working = fleet.ledger.pids()
            candidates = [i for i, worker in enumerate(workers) if worker.pid in working]
            if not candidates:
                continue
            index = rng.choice(candidates)
            leaving = workers[index]
            if rng.random() < 0.5:
                fleet.kill(leaving)  # a crash
            else:
                # A graceful stop is no fault: it finishes and answers what it
                # started, so none of its jobs may run again.
                leaving.terminate()
            disconnects += 1
            workers[index] = fleet.worker(gateway.address, concurrency=4)
            if leaving.poll() is None:
                await asyncio.to_thread(leaving.wait, 30)

    churner = asyncio.create_task(churn())
    accepted: list[str] = []
    try:
        for _ in range(JOBS // 1000):  # the jobs flow in while the workers come and go
            batch = await client.enqueue_many(JobRequest("work", {}) for _ in range(1000))
            accepted.extend(job.id for job in batch)
            await asyncio.sleep(0.2)
        outcome = await settle(
            client,
            fleet,
            accepted,
            scenario=f"{WORKERS} workers churning at random",
            provider="memory",
            note=f"{disconnects} disconnections; gateway peak RSS {gateway.peak_rss_mib():.0f} MiB",
        )
    finally:
        churner.cancel()
    report(outcome)
    assert disconnects >= 5
    assert gateway.peak_rss_mib() < PEAK_RSS_BOUND_MIB
    for worker in workers:
        worker.terminate()
    for worker in workers:
        await asyncio.to_thread(worker.wait, 30)

    async def no_streams() -> bool:  # every stream that ended was let go
        return (await client.stats("default"))[0].workers == 0

    await eventually(no_streams, 10)
