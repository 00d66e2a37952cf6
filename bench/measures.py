"""Measurements every jobwire benchmark shares, through the client SDK."""

from __future__ import annotations

import asyncio
import statistics
import time

from jobwire.client import AsyncClient

POLL = 0.01  # how often completion is checked; small next to runs of seconds


async def wait_completed(client: AsyncClient, queue: str, count: int, within: float) -> float:
    """Wait until ``count`` jobs of ``queue`` finished; return when that was seen."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        stats = await client.stats(queue)
        if stats and stats[0].completed + stats[0].dead >= count:
            return time.perf_counter()
        await asyncio.sleep(POLL)
    raise TimeoutError(f"{queue}: jobs did not finish within {within}s")


async def wait_worker(client: AsyncClient, queue: str) -> None:
    """Wait until a worker streams from ``queue``."""
    for _ in range(1000):
        stats = await client.stats(queue)
        if stats and stats[0].workers:
            return
        await asyncio.sleep(POLL)
    raise TimeoutError("worker did not connect")


async def flowing_rate(client: AsyncClient, jobs: int, *, chunk: int, within: float) -> float:
    """Jobs enqueued by ``chunk`` concurrent producers while the worker runs; jobs/s."""
    start = time.perf_counter()
    for offset in range(0, jobs, chunk):
        await asyncio.gather(
            *(client.enqueue("noop", {}, queue="flow") for _ in range(min(chunk, jobs - offset)))
        )
    end = await wait_completed(client, "flow", jobs, within=within)
    return jobs / (end - start)


async def latency(client: AsyncClient, samples: int) -> tuple[float, float]:
    """Enqueue → handler start on an idle worker, in ms (p50, p99)."""
    values = []
    for _ in range(samples):
        sent = time.time()
        job = await client.enqueue("stamp", {}, queue="latency")
        started = await job.wait(timeout=10)
        values.append((started - sent) * 1000)
    quantiles = statistics.quantiles(values, n=100)
    return statistics.median(values), quantiles[98]


def report(runs: list[dict[str, float]]) -> str:
    """A Markdown table of each measure's median and spread over the runs."""
    lines = ["| measure | median | spread (min..max) |", "|---|---:|---:|"]
    for key in runs[0]:
        values = [run[key] for run in runs]
        lines.append(
            f"| {key} | {statistics.median(values):,.1f} | {min(values):,.1f}..{max(values):,.1f} |"
        )
    return "\n".join(lines)
