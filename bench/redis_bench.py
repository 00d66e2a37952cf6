"""jobwire on the Redis provider alone: compare's Redis row, and A/B runs of gateway versions.

The workload of ``bench/core.py`` (one gateway process, one worker process
with concurrency 8 and its default 32 credits, 10,000 no-op jobs): enqueue
rates, (a) queued then drained, (b) enqueued while the worker runs,
enqueue → handler-start latency. The gateway's ``[provider]`` is Redis at
``--url`` (default: database 14 of the Redis ``compare`` uses), emptied
before each run. Beside the rates, from ``INFO`` before and after each run:
Redis's CPU time, script calls (``EVALSHA``) and commands (those scripts
run included; deterministic, whatever the machine's load) per job the run
enqueued, the completion polling (``GetQueueStats``) included.

``--variant NAME=CHECKOUT`` (repeatable) runs the gateway of another
checkout (``CHECKOUT/services/gateway/src`` first on its ``PYTHONPATH``; the
client and worker stay this tree's), interleaved run by run with the others,
so versions are compared in the same sitting:
``--variant main=/work/main --variant branch=.``

Run: ``python3 -m hatch run bench:redis`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from core import one_run
from measures import report

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15").rsplit("/", 1)[0] + "/14"
"""compare's Redis row: database 14 of the peers' Redis (they use 15)."""
SCRIPT_CALLS = "Redis script calls per job enqueued"
COMMANDS = "Redis commands per job enqueued (scripts' own included)"
REDIS_CPU = "Redis CPU per job enqueued (µs)"


def enqueued(jobs: int, samples: int) -> int:
    """Jobs ``core.one_run`` enqueues: three enqueue phases, (a), (b) and the latency samples."""
    return min(jobs, 2000) + 2 * jobs + 2 * jobs + samples


def redis_counters(client: redis.Redis) -> tuple[float, int, int]:
    """Redis's CPU seconds so far (user + system, every thread), script calls, all commands."""
    cpu = client.info("cpu")
    stats = client.info("commandstats")
    scripts = stats.get("cmdstat_evalsha", {}).get("calls", 0)
    commands = sum(int(row.get("calls", 0)) for row in stats.values())
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), int(scripts), commands


@contextmanager
def gateway_of(checkout: Path | None) -> Iterator[None]:
    """Run the gateway (and worker) processes started inside with ``checkout``'s gateway code."""
    if checkout is None:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    source = checkout.resolve() / "services" / "gateway" / "src"
    if not source.is_dir():
        raise SystemExit(f"--variant: {source} is not a directory (give a checkout's root)")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), before]))
    try:
        yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def run(url: str, checkout: Path | None, jobs: int, samples: int) -> dict[str, float]:
    """One ``core`` run on a gateway whose provider is the Redis at ``url``, emptied first."""
    with redis.Redis.from_url(url) as admin, tempfile.TemporaryDirectory() as scratch:
        admin.flushdb()
        config = Path(scratch) / "redis.toml"
        config.write_text(f'[provider]\ntype = "redis"\nurl = "{url}"\n')
        cpu, calls, commands = redis_counters(admin)
        with gateway_of(checkout):
            figures = asyncio.run(one_run(jobs, samples, "--config", str(config)))
        cpu_after, calls_after, commands_after = redis_counters(admin)
        admin.flushdb()
    count = enqueued(jobs, samples)
    figures[SCRIPT_CALLS] = (calls_after - calls) / count
    figures[COMMANDS] = (commands_after - commands) / count
    figures[REDIS_CPU] = (cpu_after - cpu) / count * 1e6
    return figures


def variant(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError("expected NAME=CHECKOUT, e.g. main=/work/main")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url", default=REDIS_URL, help="the Redis database to use (emptied)")
    parser.add_argument(
        "--variant",
        type=variant,
        action="append",
        metavar="NAME=CHECKOUT",
        help="a gateway version to run, interleaved with the others (repeatable)",
    )
    args = parser.parse_args()
    variants: list[tuple[str, Path | None]] = list(args.variant or [("this tree", None)])
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in variants}
    for n in range(args.repeat):
        for name, checkout in variants:
            figures = run(args.url, checkout, args.jobs, args.samples)
            runs[name].append(figures)
            drained = figures["end-to-end (a) queued then drained (jobs/s)"]
            flowing = figures["end-to-end (b) enqueued while running (jobs/s)"]
            p50 = figures["enqueue→start latency p50 (ms)"]
            print(
                f"run {n + 1} {name}: (a) {drained:,.0f} jobs/s, (b) {flowing:,.0f} jobs/s, "
                f"p50 {p50:.2f} ms",
                flush=True,
            )
    for name, _ in variants:
        title = f"jobwire on Redis ({name}), {args.jobs:,} no-op jobs, worker concurrency 8"
        print(f"\n{title}, {args.repeat} runs\n")
        print(report(runs[name]))


if __name__ == "__main__":
    main()
