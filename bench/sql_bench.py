"""jobwire on the SQL providers: the core workload on PostgreSQL and on a SQLite file.

The workload of ``bench/core.py`` (one gateway process, one worker process
with concurrency 8, no-op jobs): enqueue rates, (a) queued then drained,
(b) enqueued while the worker runs, enqueue → handler-start latency. Each
run gets a fresh database (PostgreSQL: a new database on the machine's
server at ``--postgres``; SQLite: a new file), with ``fsync`` and
``synchronous_commit`` at their defaults. Completion is polled every 0.1 s
(``measures.POLL``; the memory rows poll every 0.01 s).

Run: ``python3 -m hatch run bench:sql`` (``--provider postgres`` or ``sqlite``).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import measures
from core import one_run
from measures import report

SQL_POLL = 0.1
"""How often completion is polled on the SQL providers, in seconds.

GetQueueStats is GROUP BY over the queue's rows here (memory keeps counters):
polled 100 times a second it would compete with the work it measures. A
tenth of a second is still under 1 % of a 10,000-job run.
"""

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def psql(url: str, sql: str) -> None:
    subprocess.run(["psql", url, "-qAtc", sql], check=True, capture_output=True, timeout=60)


@contextmanager
def provider_config(kind: str, admin: str) -> Iterator[Path]:
    """A gateway config file on a fresh database of ``kind``; the database dropped after."""
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "jobwire.toml"
        if kind == "sqlite":
            url = f"sqlite+aiosqlite:///{directory}/queue.db"
            config.write_text(f'[provider]\ntype = "sqlite"\ndatabase_url = "{url}"\n')
            yield config
            return
        name = f"jobwire_bench_{uuid.uuid4().hex[:8]}"
        psql(admin, f'CREATE DATABASE "{name}"')
        try:
            host = admin.split("://", 1)[1].rsplit("/", 1)[0]
            url = f"postgresql+asyncpg://{host}/{name}"
            config.write_text(f'[provider]\ntype = "postgres"\ndatabase_url = "{url}"\n')
            yield config
        finally:
            psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sql_polling() -> Iterator[None]:
    """Poll completion every :data:`SQL_POLL` seconds meanwhile."""
    before, measures.POLL = measures.POLL, SQL_POLL
    try:
        yield
    finally:
        measures.POLL = before


def run(kind: str, jobs: int, samples: int, admin: str) -> dict[str, float]:
    """The core workload once, on a fresh database of ``kind``."""
    with provider_config(kind, admin) as config, sql_polling():
        return asyncio.run(one_run(jobs, samples, "--config", str(config), call_timeout=60))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--provider", choices=["postgres", "sqlite"], action="append")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=ADMIN, help="libpq URL of an admin connection")
    args = parser.parse_args()
    for kind in args.provider or ["postgres", "sqlite"]:
        runs = [run(kind, args.jobs, args.samples, args.postgres) for _ in range(args.repeat)]
        title = f"jobwire, {kind} provider, {args.jobs:,} no-op jobs, worker concurrency 8"
        print(f"\n{title}, {args.repeat} runs\n", flush=True)
        print(report(runs), flush=True)


if __name__ == "__main__":
    main()
