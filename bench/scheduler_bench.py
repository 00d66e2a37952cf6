"""How fast the scheduler moves due one-time jobs to the queue, and how late it fires.

Two measurements per database, against the memory provider:

* bulk: ``--jobs`` one-time jobs (default 10,000) all due at the same instant;
  reports jobs/s moved to the provider and the lateness (moved - due) of the
  whole batch, which is mostly queueing behind the jobs moved before;
* single fires: ``--spaced`` jobs (default 200) each due on its own, 25 ms
  apart; reports the lateness of a fire when nothing else is due.

Run::

    python bench/scheduler_bench.py                 # SQLite and PostgreSQL
    python bench/scheduler_bench.py --backend sqlite --jobs 20000

PostgreSQL: ``--postgres-url`` (default: user postgres on 127.0.0.1:5432) must
be allowed to create databases; the benchmark creates ``jobwire_bench_<pid>``
and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from jobwire.gateway import GatewaySettings, MemoryProviderSettings, SchedulerSettings
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobRecord, NewJob
from jobwire.gateway._service import JobService
from jobwire.gateway.providers.memory import MemoryProvider
from jobwire.gateway.scheduler import Scheduler

BATCH = 1000  # the most one EnqueueJobs call carries


class TimedProvider(MemoryProvider):
    """Records when each job reached the provider."""

    def __init__(self) -> None:
        super().__init__(MemoryProviderSettings(max_history=1_000_000), JobEvents())
        self.arrived: dict[str, float] = {}

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        now = time.time()
        for job in jobs:
            self.arrived[job.id] = now
        return await super().insert(jobs)


def new_job(due: float) -> NewJob:
    return NewJob(
        queue="default",
        type="bench",
        payload=b'{"n": 1}',
        content_type="application/json",
        attributes={},
        max_retries=3,
        timeout=None,
        deduplication_key="",
        schedule_time=due,
        request_id="",
    )


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def moved(provider: TimedProvider, count: int) -> None:
    # Polling: the benchmark watches from outside; 10 ms is below what it reports.
    while len(provider.arrived) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def bench(url: str, jobs: int, spaced: int) -> dict[str, float]:
    provider = TimedProvider()
    settings = SchedulerSettings(database_url=url, poll_interval=timedelta(seconds=60))
    sink = JobService(
        GatewaySettings(scheduler=SchedulerSettings(enabled=False)), provider, provider.events
    )
    scheduler = Scheduler(settings, sink)
    await scheduler.start()
    try:
        # Bulk: everything due at one instant, far enough ahead to store it all.
        due = time.time() + 1.0 + jobs / 5000
        started = time.perf_counter()
        due_at: dict[str, float] = {}
        for first in range(0, jobs, BATCH):
            held = await scheduler.hold([new_job(due) for _ in range(min(BATCH, jobs - first))])
            due_at.update((record.id, due) for record, _ in held)
        stored = time.perf_counter() - started
        assert time.time() < due, "storing took longer than planned; raise the lead time"
        async with asyncio.timeout(120):
            await moved(provider, jobs)
        bulk = [provider.arrived[job_id] - due_at[job_id] for job_id in due_at]
        moved_in = max(provider.arrived.values()) - due

        # Single fires: one job due every 25 ms, nothing else in the way.
        provider.arrived.clear()
        start = time.time() + 0.5
        spaced_due: dict[str, float] = {}
        for i in range(spaced):
            [(record, _)] = await scheduler.hold([new_job(start + i * 0.025)])
            spaced_due[record.id] = start + i * 0.025
        async with asyncio.timeout(60):
            await moved(provider, spaced)
        single = [provider.arrived[job_id] - spaced_due[job_id] for job_id in spaced_due]
    finally:
        await scheduler.stop()
    return {
        "stored/s": jobs / stored,
        "moved/s": jobs / moved_in,
        "bulk p50": statistics.median(bulk),
        "bulk p99": percentile(bulk, 0.99),
        "fire p50": statistics.median(single),
        "fire p99": percentile(single, 0.99),
        "fire max": max(single),
    }


async def with_postgres(admin_url: str, jobs: int, spaced: int) -> dict[str, float]:
    name = f"jobwire_bench_{os.getpid()}"
    admin = create_async_engine(
        make_url(admin_url).set(drivername="postgresql+asyncpg"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = make_url(admin_url).set(drivername="postgresql+asyncpg", database=name)
        return await bench(url.render_as_string(hide_password=False), jobs, spaced)
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--spaced", type=int, default=200)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "SCHEDULER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as scratch:
            url = f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
            results["sqlite"] = await bench(url, args.jobs, args.spaced)
    if args.backend in ("postgres", "both"):
        results["postgres"] = await with_postgres(args.postgres_url, args.jobs, args.spaced)

    print(f"{args.jobs} one-time jobs due at once; {args.spaced} single fires 25 ms apart")
    print(f"{'':10}" + "".join(f"{key:>11}" for key in next(iter(results.values()))))
    for backend, figures in results.items():
        cells = []
        for key, value in figures.items():
            cells.append(f"{value:>11,.0f}" if key.endswith("/s") else f"{value * 1000:>9.1f}ms")
        print(f"{backend:10}" + "".join(cells))


if __name__ == "__main__":
    asyncio.run(main())
