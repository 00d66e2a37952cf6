"""jobwire on the memory provider: enqueue rates, end-to-end rates and latency.

One gateway process and one worker process (concurrency 8), 10,000 no-op jobs:

- enqueue: one ``EnqueueJob`` call at a time; concurrent ``enqueue`` calls
  (coalesced by ``AsyncClient``); ``enqueue_many`` batches;
- end-to-end (a): jobs enqueued first, all due at the same instant, then drained;
- end-to-end (b): jobs enqueued while the worker runs;
- latency: enqueue → handler start on an idle worker, one job at a time.

Each figure is the median of ``--repeat`` runs, with the spread (min..max).
Run: ``python3 -m hatch run bench:core``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from jobwire.client import AsyncClient, JobRequest

from measures import flowing_rate, latency, report, wait_completed, wait_worker
from processes import gateway, peak_rss_mib, worker

QUEUES = ("single", "coalesced", "batched", "drain", "flow", "latency")
"""Every queue the workload uses (an SQS gateway needs one SQS queue each)."""


async def enqueue_rates(client: AsyncClient, jobs: int) -> dict[str, float]:
    """Enqueue throughput of the three ways to enqueue."""
    single = min(jobs, 2000)
    start = time.perf_counter()
    for _ in range(single):
        await client.enqueue("noop", {}, queue="single")
    single_rate = single / (time.perf_counter() - start)

    start = time.perf_counter()
    for offset in range(0, jobs, 1000):
        await asyncio.gather(
            *(
                client.enqueue("noop", {}, queue="coalesced")
                for _ in range(min(1000, jobs - offset))
            )
        )
    coalesced_rate = jobs / (time.perf_counter() - start)

    start = time.perf_counter()
    await client.enqueue_many(JobRequest("noop", {}, queue="batched") for _ in range(jobs))
    batched_rate = jobs / (time.perf_counter() - start)
    return {
        "enqueue, one call per job (jobs/s)": single_rate,
        "enqueue, concurrent calls coalesced (jobs/s)": coalesced_rate,
        "enqueue_many, batches of 1000 (jobs/s)": batched_rate,
    }


async def drain_rate(client: AsyncClient, jobs: int, *, lead: float | None = None) -> float:
    """(a) Jobs already queued: all become due at one instant, then the worker drains them.

    ``lead``: seconds from now to that instant, long enough to enqueue them all.
    """
    lead = 1.0 + jobs / 20_000 if lead is None else lead
    due = time.time() + lead
    at = datetime.fromtimestamp(due, UTC)
    await client.enqueue_many(JobRequest("noop", {}, queue="drain", at=at) for _ in range(jobs))
    await asyncio.sleep(max(0.0, due - time.time()))
    start = time.perf_counter()
    end = await wait_completed(client, "drain", jobs, within=120)
    return jobs / (end - start)


async def one_run(
    jobs: int,
    samples: int,
    *gateway_args: str,
    worker_args: Sequence[str] = (),
    chunk: int = 500,
    call_timeout: float = 10.0,
) -> dict[str, float]:
    """The whole workload once, on a gateway started with ``gateway_args``.

    ``worker_args``: more ``jobwire-worker`` options; ``chunk``: concurrent
    enqueue calls at a time in (b); ``call_timeout``: the client's deadline per call.
    """
    figures: dict[str, float] = {}
    with gateway(*gateway_args) as (gateway_process, address):
        async with AsyncClient(address, timeout=call_timeout) as client:
            figures.update(await enqueue_rates(client, jobs))
            # Twice the time enqueue_many took to enqueue as many: all are in before they are due.
            lead = 1.0 + 2 * jobs / figures["enqueue_many, batches of 1000 (jobs/s)"]
            queues = ["drain", "flow", "latency"]
            queue_args = [arg for queue in queues for arg in ("--queue", queue)]
            worker_options = ("--concurrency", "8", *queue_args, *worker_args)
            with worker(address, *worker_options) as worker_process:
                await wait_worker(client, "latency")
                p50, p99 = await latency(client, samples)
                figures["enqueue→start latency p50 (ms)"] = p50
                figures["enqueue→start latency p99 (ms)"] = p99
                figures["end-to-end (a) queued then drained (jobs/s)"] = await drain_rate(
                    client, jobs, lead=lead
                )
                figures["end-to-end (b) enqueued while running (jobs/s)"] = await flowing_rate(
                    client, jobs, chunk=chunk, within=120
                )
                figures["peak RSS worker (MiB)"] = peak_rss_mib(worker_process.pid)
            figures["peak RSS gateway (MiB)"] = peak_rss_mib(gateway_process.pid)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--max-in-flight", type=int, help="the worker's credits (default: its own, 32)"
    )
    args = parser.parse_args()
    worker_args = () if args.max_in_flight is None else ("--max-in-flight", str(args.max_in_flight))
    runs = [
        asyncio.run(one_run(args.jobs, args.samples, worker_args=worker_args))
        for _ in range(args.repeat)
    ]
    title = f"jobwire, memory provider, {args.jobs:,} no-op jobs, worker concurrency 8"
    print(f"\n{title}, {args.repeat} runs\n")
    print(report(runs))


if __name__ == "__main__":
    main()
