"""jobwire next to Celery, Dramatiq, arq, RQ and procrastinate: one Markdown table.

The same workload for every system (see bench/peers/common.py and
bench/core.py): 10,000 no-op jobs, one worker process at concurrency 8
(RQ's SimpleWorker: 1), (a) enqueued first then drained, (b) enqueued while
the worker runs; enqueue → handler-start latency on an idle worker, 300
samples; peak RSS of the worker and of the broker (jobwire: the gateway).
Each system runs ``--repeat`` times; cells are medians with the spread.
jobwire also runs with the scheduler holding the delayed jobs of (a) (SQLite),
on the SQS provider against a moto server (``--sqs-jobs``: moto serves a
few hundred calls a second), and on the Redis provider against the Redis the
peers use (database 14, emptied before each run), and on the SQL providers
(a fresh PostgreSQL database on the server procrastinate uses, or a SQLite
file, each run; completion polled every 0.1 s there); under the table, the
transport's ceiling: a raw grpc.aio stream moving as many jobs with no queue
logic (bench/ceiling.py).
Redis peers need Redis at 127.0.0.1:6379 (database 15 is emptied), procrastinate
PostgreSQL at 127.0.0.1:5432 (a throwaway database is created and dropped);
a peer whose server is missing is skipped with a note.
Run: ``python3 -m hatch run bench:compare``; ``--only redis,dramatiq,celery,rq,arq``
runs just those rows (the Redis-based ones here; ``--only postgres,procrastinate``
the PostgreSQL ones), the first row named the reference of the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import statistics
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from peers.common import Peer, one_run

import ceiling
import core
import sqs_bench
from measures import report

PEERS = ["celery", "dramatiq", "arq", "rq", "procrastinate"]
JOBWIRE_ROWS = ["memory", "scheduler", "sqs", "redis", "postgres", "sqlite"]
"""jobwire's rows: memory provider, with the scheduler, on SQS (moto), Redis, PostgreSQL, SQLite."""
ROWS = [*JOBWIRE_ROWS, "ceiling", *PEERS]
"""What ``--only`` may name, in the order the rows run."""
ENQUEUE = "enqueue, one call per job (jobs/s)"
DRAIN = "end-to-end (a) queued then drained (jobs/s)"
FLOW = "end-to-end (b) enqueued while running (jobs/s)"
P50 = "enqueue→start latency p50 (ms)"
P99 = "enqueue→start latency p99 (ms)"
WORKER = "peak RSS worker (MiB)"
BROKER = "peak RSS broker (MiB)"


def cell(runs: list[dict[str, float]], key: str, digits: int = 0) -> str:
    """Median (min..max) of one figure over the runs."""
    values = [run[key] for run in runs]
    if any(value != value for value in values):  # NaN: not measurable
        return "n/a"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} ({min(values):,.{digits}f}..{max(values):,.{digits}f})"


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def times(ratio: float) -> str:
    """A ratio to jobwire, with a significant digit even when it is tiny (moto)."""
    return f"{ratio:.2f}x" if ratio >= 0.01 else f"{ratio:.1g}x"


def table(results: list[tuple[str, str, list[dict[str, float]]]]) -> str:
    """The rows as Markdown; the ratios are to the first row (jobwire on memory, by default)."""
    first, backend, reference = results[0]
    named = first if backend == "memory" else f"{first} ({backend.split(' (')[0]})"
    header = (
        "| system | backend | enqueue jobs/s | end-to-end (a) jobs/s | end-to-end (b) jobs/s "
        f"| latency p50 / p99 ms | peak RSS worker / broker MiB | ratio to {named} "
        "(end-to-end) |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, backend, runs in results:
        ratio_a = median(runs, DRAIN) / median(reference, DRAIN)
        ratio_b = median(runs, FLOW) / median(reference, FLOW)
        lines.append(
            f"| {name} | {backend} | {cell(runs, ENQUEUE)} | {cell(runs, DRAIN)} "
            f"| {cell(runs, FLOW)} | {cell(runs, P50, 1)} / {cell(runs, P99, 1)} "
            f"| {cell(runs, WORKER, 1)} / {cell(runs, BROKER, 1)} "
            f"| (a) {times(ratio_a)} / (b) {times(ratio_b)} |"
        )
    return "\n".join(lines)


REDIS_DB = 14
"""Database of the machine's Redis the Redis row uses (the peers use 15)."""


def run_jobwire(
    jobs: int,
    samples: int,
    repeat: int,
    *gateway_args: str,
    sqs: bool = False,
    before: Callable[[], None] = lambda: None,
) -> list[dict[str, float]]:
    runs = []
    for _ in range(repeat):
        before()
        if sqs:
            figures = asyncio.run(sqs_bench.core_run(jobs, samples))
        else:
            figures = asyncio.run(core.one_run(jobs, samples, *gateway_args))
        figures[BROKER] = figures.pop("peak RSS gateway (MiB)")
        runs.append(figures)
    return runs


class Results:
    """The table's rows so far, each printed as soon as it is known.

    A configuration that fails becomes a note: a long run still ends with a table.
    """

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, list[dict[str, float]]]] = []
        self.notes: list[str] = []

    def measure(self, name: str, backend: str, runs: Callable[[], list[dict[str, float]]]) -> None:
        print(f"{name} ({backend})", flush=True)
        try:
            self.rows.append((name, backend, runs()))
        except Exception as error:  # one failure must not lose the other rows
            self.note(f"{name} ({backend}) failed: {error!r}")
            return
        print(table(self.rows).splitlines()[-1], flush=True)

    def note(self, text: str) -> None:
        """Print ``text`` now and again under the table."""
        self.notes.append(text)
        print(text, flush=True)


def run_jobwire_variants(args: argparse.Namespace, results: Results) -> None:
    """jobwire on the memory provider, with the scheduler, on SQS (moto), Redis and SQL."""
    if "memory" in args.only:
        results.measure(
            "jobwire", "memory", partial(run_jobwire, args.jobs, args.samples, args.repeat)
        )
    if "scheduler" in args.only:
        run_jobwire_with_scheduler(args, results)
    if args.sqs_jobs and "sqs" in args.only:
        results.measure(
            "jobwire",
            f"SQS on moto ({args.sqs_jobs:,} jobs)",
            partial(run_jobwire, args.sqs_jobs, args.sqs_samples, args.repeat, sqs=True),
        )
    if "redis" in args.only:
        run_jobwire_on_redis(args, results)
    for kind in ("postgres", "sqlite"):
        if kind in args.only:
            run_jobwire_on_sql(kind, args, results)


def run_jobwire_with_scheduler(args: argparse.Namespace, results: Results) -> None:
    """jobwire on the memory provider, every delayed job of (a) held by the scheduler."""
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "scheduler.toml"
        # Every delayed job is held in the scheduler's SQLite database until due
        # (jobwire.db in the gateway's temporary working directory).
        config.write_text("[scheduler]\ndelay_threshold = 0\n")
        results.measure(
            "jobwire",
            "memory + scheduler (SQLite): (a) moved by the scheduler",
            partial(run_jobwire, args.jobs, args.samples, args.repeat, "--config", str(config)),
        )


def run_jobwire_on_redis(args: argparse.Namespace, results: Results) -> None:
    """jobwire on the Redis provider, on the Redis the Redis peers use."""
    from peers.common import REDIS_URL
    from peers.redis_records import reachable

    reason = reachable()
    if reason:
        results.note(f"skipped jobwire on Redis: {reason}")
        return
    import redis

    url = REDIS_URL.rsplit("/", 1)[0] + f"/{REDIS_DB}"

    def empty() -> None:
        with redis.Redis.from_url(url) as client:
            client.flushdb()

    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "redis.toml"
        config.write_text(f'[provider]\ntype = "redis"\nurl = "{url}"\n')
        results.measure(
            "jobwire",
            "Redis (Lua scripts, pub/sub wake-ups)",
            partial(
                run_jobwire,
                args.jobs,
                args.samples,
                args.repeat,
                "--config",
                str(config),
                before=empty,
            ),
        )
        empty()


def run_jobwire_on_sql(kind: str, args: argparse.Namespace, results: Results) -> None:
    """jobwire on the PostgreSQL provider (the machine's server) or on a SQLite file.

    Each run on a fresh database, as ``bench/sql_bench.py`` (procrastinate's
    row uses the same PostgreSQL).
    """
    import sql_bench

    def runs() -> list[dict[str, float]]:
        measured = []
        for _ in range(args.repeat):
            figures = sql_bench.run(kind, args.jobs, args.samples, sql_bench.ADMIN)
            figures[BROKER] = figures.pop("peak RSS gateway (MiB)")
            measured.append(figures)
        return measured

    backend = {"postgres": "PostgreSQL (SKIP LOCKED, LISTEN/NOTIFY)", "sqlite": "SQLite file"}
    results.measure("jobwire", backend[kind], runs)


def run_peer(peer: Peer, jobs: int, samples: int, repeat: int) -> list[dict[str, float]]:
    async def runs() -> list[dict[str, float]]:
        await peer.open()
        try:
            return [await one_run(peer, jobs, samples) for _ in range(repeat)]
        finally:
            await peer.close()

    return asyncio.run(runs())


def load(name: str) -> tuple[Callable[[], Peer] | None, str | None, Callable[[], None]]:
    """The peer's class, or why it is skipped; and what to clean up after it."""
    try:
        module = importlib.import_module(f"peers.{name}_peer")
    except ImportError as error:
        return None, f"{name}: not installed ({error}); use the bench env", lambda: None
    if name == "procrastinate":
        reason = module.create_database()
        return (None, reason, lambda: None) if reason else (module.peer, None, module.drop_database)
    from peers.redis_records import reachable

    reason = reachable()
    if reason:
        return None, f"{name}: {reason}", lambda: None
    return module.peer, None, lambda: None


def only(text: str) -> list[str]:
    """``--only``'s comma-separated rows, each one of :data:`ROWS`."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown row {', '.join(unknown) or '(none)'}; choose from {', '.join(ROWS)}"
        )
    return names


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers", nargs="*", choices=PEERS, default=PEERS)
    parser.add_argument(
        "--sqs-jobs", type=int, default=500, help="jobs of the SQS runs (0: no SQS row)"
    )
    parser.add_argument("--sqs-samples", type=int, default=100, help="latency samples on SQS")
    parser.add_argument(
        "--no-redis", dest="redis", action="store_false", help="no jobwire row on Redis"
    )
    parser.add_argument(
        "--only",
        type=only,
        metavar="ROW,ROW",
        help=f"run only these rows (of {', '.join(ROWS)}); ratios are to the first one run, "
        "e.g. --only redis,dramatiq,celery,rq,arq",
    )
    args = parser.parse_args()
    if args.only is None:
        args.only = [*JOBWIRE_ROWS, "ceiling", *args.peers]
        if not args.redis:
            args.only.remove("redis")
    return args


def main() -> None:
    args = parse_args()
    results = Results()
    run_jobwire_variants(args, results)
    if not results.rows and any(row in args.only for row in JOBWIRE_ROWS):
        raise SystemExit("jobwire failed: no reference for the ratios")
    raw = []
    if "ceiling" in args.only:
        print("transport ceiling: raw grpc.aio stream", flush=True)
        raw = [asyncio.run(ceiling.one_run(args.jobs, args.samples)) for _ in range(args.repeat)]
    for name in (row for row in ROWS if row in PEERS and row in args.only):
        factory, reason, cleanup = load(name)
        if factory is None:
            results.note(f"skipped {reason}")
            continue
        try:
            peer = factory()
            runs = partial(run_peer, peer, args.jobs, args.samples, args.repeat)
            results.measure(peer.name, peer.backend, runs)
        finally:
            cleanup()
    if not results.rows:
        raise SystemExit("no row was measured")

    date = datetime.now(UTC).strftime("%Y-%m-%d")
    print(
        f"\n{date}: {args.jobs:,} no-op jobs, worker concurrency 8, "
        f"{args.samples} latency samples, medians of {args.repeat} runs (min..max)\n"
    )
    print(table(results.rows))
    jobwire = results.rows[0][2]
    if results.rows[0][0] == "jobwire":
        coalesced = cell(jobwire, "enqueue, concurrent calls coalesced (jobs/s)")
        batched = cell(jobwire, "enqueue_many, batches of 1000 (jobs/s)")
        print(
            "\nenqueue: one enqueue call at a time for every system. jobwire's other ways "
            f"({results.rows[0][1]}): concurrent calls coalesced {coalesced} jobs/s, "
            f"enqueue_many {batched} jobs/s."
        )
    if raw:
        stream = median(raw, ceiling.BATCHED)
        print(
            f"\nTransport ceiling (bench/ceiling.py: a raw grpc.aio stream, {args.jobs:,} jobs, "
            "jobwire's messages, no queue logic):\n"
        )
        print(report(raw))
        if results.rows[0][:2] == ("jobwire", "memory"):
            print(
                "\njobwire end to end on the memory provider runs at "
                f"{median(jobwire, DRAIN) / stream:.0%} (a) and "
                f"{median(jobwire, FLOW) / stream:.0%} (b) of the batched raw stream."
            )
    for note in results.notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
