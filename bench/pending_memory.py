"""Gateway memory per pending job, on the memory provider.

One gateway process, no worker. After start-up and a warm-up of a few hundred
jobs, its resident set (VmRSS) is read; then 100,000 small jobs
(``{"n": i}``) are enqueued with ``enqueue_many`` and left pending, and VmRSS
and its peak (VmHWM) are read again. The growth divided by the jobs is the
gateway's memory per pending job; the payload's share is reported apart
because it is the producer's choice. Target: at most 1 KiB per job beyond the
payload.

Each figure is the median of ``--repeat`` runs, with the spread (min..max).
Run: ``python3 -m hatch run bench:pending``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

from jobwire.client import AsyncClient, JobRequest

from measures import report
from processes import gateway

WARM_UP = 500
KiB = 1024
MiB = 1024 * KiB


def status_bytes(pid: int, field: str) -> int:
    """A ``VmRSS``-like field of ``/proc/<pid>/status``, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * KiB
    raise KeyError(field)


async def one_run(jobs: int) -> dict[str, float]:
    """Start a gateway, fill one queue with ``jobs`` pending jobs, measure its memory."""
    with gateway() as (process, address):
        async with AsyncClient(address) as client:
            # The first calls allocate gRPC buffers, caches and the queue's
            # structures once; they are not a cost per job.
            await client.enqueue_many(
                JobRequest("noop", {"n": i}, queue="warm-up") for i in range(WARM_UP)
            )
            before = status_bytes(process.pid, "VmRSS")
            requests = [JobRequest("noop", {"n": i}, queue="pending") for i in range(jobs)]
            payload = statistics.fmean(
                len(client.serializer.dumps(request.payload)) for request in requests
            )
            await client.enqueue_many(requests)
            after = status_bytes(process.pid, "VmRSS")
            peak = status_bytes(process.pid, "VmHWM")
            [stats] = await client.stats("pending")
            if stats.pending != jobs:
                raise RuntimeError(f"expected {jobs} pending jobs, the gateway has {stats.pending}")
    per_job = (after - before) / jobs
    return {
        "pending jobs": jobs,
        "gateway RSS before (MiB)": before / MiB,
        "gateway RSS after (MiB)": after / MiB,
        "bytes per pending job": per_job,
        "payload bytes per job": payload,
        "bytes per job beyond the payload": per_job - payload,
        "peak RSS gateway (MiB)": peak / MiB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.jobs)) for _ in range(args.repeat)]
    title = f"jobwire gateway, memory provider, {args.jobs:,} pending jobs, no worker"
    print(f"\n{title}, {args.repeat} runs\n")
    print(report(runs))
    beyond = statistics.median(run["bytes per job beyond the payload"] for run in runs)
    verdict = "meets" if beyond <= KiB else "misses"
    print(f"\n{beyond:,.0f} bytes per job beyond the payload: {verdict} the 1 KiB target")


if __name__ == "__main__":
    main()
