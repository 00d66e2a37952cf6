"""Flow control's cost: the same no-op workload with and without limits, per provider.

One gateway process and one worker process (concurrency 8) per run, 10,000
no-op jobs, three set-ups (issue 23's performance row):

- ``no keys``: no concurrency key, no limit (strict FIFO, the plain path);
- ``100 keys``: each job one of 100 concurrency keys, no limit (fair dispatch);
- ``100 keys, limits``: the same with ``max_concurrency_per_key = 4`` and a
  rate far above the workload (``1000000/second``, burst 1000).

Each is measured as core.py measures end-to-end: (a) queued then drained (all
due at one instant), (b) enqueued while the worker runs. Medians of
``--repeat`` runs, on the memory provider and on PostgreSQL (a fresh database
per run, as bench/sql_bench.py) unless ``--provider`` names others
(``memory``, ``postgres``, ``sqlite``, ``redis``: database 14 of the bench
Redis, emptied per run, as bench/redis_bench.py). Run:
``python3 -m hatch run bench:flow``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import redis

from jobwire.client import AsyncClient, JobRequest

import measures
from measures import report, wait_completed, wait_worker
from processes import gateway, worker
from redis_bench import REDIS_URL
from sql_bench import ADMIN, provider_config

SETUPS = ("no keys", "100 keys", "100 keys, limits")
KEYS = 100


def _key(n: int, setup: str) -> str | None:
    return None if setup == "no keys" else f"tenant-{n % KEYS}"


async def _configure(client: AsyncClient, setup: str) -> None:
    if setup == "100 keys, limits":
        for queue in ("drain", "flow"):
            await client.update_queue_config(
                queue, max_concurrency_per_key=4, rate="1000000/second", burst=1000
            )


async def _drained(client: AsyncClient, jobs: int, setup: str, lead: float) -> float:
    due = time.time() + lead
    at = datetime.fromtimestamp(due, UTC)
    await client.enqueue_many(
        JobRequest("noop", {}, queue="drain", at=at, concurrency_key=_key(n, setup))
        for n in range(jobs)
    )
    await asyncio.sleep(max(0.0, due - time.time()))
    start = time.perf_counter()
    return jobs / (await wait_completed(client, "drain", jobs, within=120) - start)


async def _flowing(client: AsyncClient, jobs: int, setup: str, chunk: int = 500) -> float:
    start = time.perf_counter()
    for offset in range(0, jobs, chunk):
        await asyncio.gather(
            *(
                client.enqueue("noop", {}, queue="flow", concurrency_key=_key(n, setup))
                for n in range(offset, min(offset + chunk, jobs))
            )
        )
    return jobs / (await wait_completed(client, "flow", jobs, within=120) - start)


@contextmanager
def _redis_config() -> Iterator[Path]:
    """A gateway config on bench/redis_bench.py's Redis database, emptied before and after."""
    admin = redis.Redis.from_url(REDIS_URL)
    admin.flushdb()
    try:
        with tempfile.TemporaryDirectory() as directory:
            config = Path(directory) / "jobwire.toml"
            config.write_text(f'[provider]\ntype = "redis"\nurl = "{REDIS_URL}"\n')
            yield config
    finally:
        admin.flushdb()
        admin.close()


@contextmanager
def gateway_on(kind: str) -> Iterator[str]:
    """A fresh gateway of provider ``kind`` (a fresh database for the SQL ones); its address."""
    if kind == "memory":
        with gateway() as (_, address):
            yield address
        return
    configs = _redis_config() if kind == "redis" else provider_config(kind, ADMIN)
    with configs as config, gateway("--config", str(config)) as (_, address):
        yield address


async def one_run(jobs: int, setup: str, kind: str) -> dict[str, float]:
    """Both measures of one set-up on a fresh gateway and worker."""
    # As bench/sql_bench.py: GetQueueStats is a GROUP BY on the SQL providers.
    measures.POLL = 0.1 if kind in ("postgres", "sqlite") else 0.01
    with gateway_on(kind) as address:
        async with AsyncClient(address, timeout=10.0) as client:
            await _configure(client, setup)
            start = time.perf_counter()
            await client.enqueue_many(JobRequest("noop", {}, queue="warm") for _ in range(jobs))
            lead = 1.0 + 2 * (time.perf_counter() - start)
            await client.purge_jobs(queue="warm")
            options = ("--concurrency", "8", "--queue", "drain", "--queue", "flow")
            with worker(address, *options):
                await wait_worker(client, "drain")
                return {
                    f"{setup}: (a) queued then drained (jobs/s)": await _drained(
                        client, jobs, setup, lead
                    ),
                    f"{setup}: (b) enqueued while running (jobs/s)": await _flowing(
                        client, jobs, setup
                    ),
                }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--provider", choices=["memory", "postgres", "sqlite", "redis"], action="append"
    )
    args = parser.parse_args()
    for kind in args.provider or ["memory", "postgres"]:
        runs: list[dict[str, float]] = [{} for _ in range(args.repeat)]
        for run in runs:  # interleaved, so that a busy spell of the machine hits every set-up
            for setup in SETUPS:
                run.update(asyncio.run(one_run(args.jobs, setup, kind)))
        print(f"\njobwire, {kind} provider, {args.jobs:,} no-op jobs, {args.repeat} runs\n")
        print(report(runs), flush=True)


if __name__ == "__main__":
    main()
