"""What a job costs PostgreSQL: every statement of a run, from the server's own log.

``pg_stat_statements`` needs ``shared_preload_libraries`` (a server restart);
this machine's server does not load it. So the run's database gets
``log_min_duration_statement = 0`` (``ALTER DATABASE``: only the sessions of
that database log) and the lines of the server log naming that database are
read back: per statement, the calls and the server time (parse, bind and
execute together) per job, and the transactions per job
(``pg_stat_database.xact_commit``). Logging every statement slows the run a
little; the rates printed are not the benchmark's.

The workload is ``sql_bench``'s end-to-end part: one gateway, one worker
process (concurrency 8), ``--jobs`` no-op jobs queued then drained, then as
many enqueued while the worker runs.

Run: ``python3 -m hatch run bench:statements`` (reads the
server log, ``--log``: run it as a user who may).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import tempfile
import uuid
from collections import defaultdict
from pathlib import Path

from jobwire.client import AsyncClient

from core import drain_rate
from measures import flowing_rate, wait_worker
from processes import gateway, worker
from sql_bench import ADMIN, psql, sql_polling

LOG = "/var/log/postgresql/postgresql-15-main.log"
_LINE = re.compile(r"duration: ([\d.]+) ms  (?:statement|(?:parse|bind|execute) [^:]*): (.*)")


def _kind(sql: str) -> str:
    """A statement's text with its varying parts folded, cut short."""
    sql = re.sub(r"\s+", " ", sql).strip()
    sql = re.sub(r"'[^']*'", "'…'", sql)
    sql = re.sub(r"\$\d+|\b\d+(\.\d+)?\b", "?", sql)
    sql = re.sub(r"(\?, )+\?", "?…", sql)
    return sql[:90]


def _commits(admin: str, name: str) -> int:
    out = subprocess.run(
        [
            "psql",
            admin,
            "-qAtc",
            f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{name}'",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip() or 0)


async def workload(config: Path, jobs: int) -> None:
    with gateway("--config", str(config)) as (_, address):
        async with AsyncClient(address, timeout=60) as client:
            with worker(address, "--concurrency", "8", "--queue", "drain", "--queue", "flow"):
                await wait_worker(client, "drain")
                print(f"queued then drained: {await drain_rate(client, jobs):,.0f} jobs/s")
                rate = await flowing_rate(client, jobs, chunk=500, within=120)
                print(f"enqueued while running: {rate:,.0f} jobs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per phase")
    parser.add_argument("--postgres", default=ADMIN, help="libpq URL of an admin connection")
    parser.add_argument("--log", default=LOG, help="the PostgreSQL server's log file")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    name = f"jobwire_statements_{uuid.uuid4().hex[:8]}"
    psql(args.postgres, f'CREATE DATABASE "{name}"')
    try:
        psql(args.postgres, f'ALTER DATABASE "{name}" SET log_min_duration_statement = 0')
        host = args.postgres.split("://", 1)[1].rsplit("/", 1)[0]
        with tempfile.TemporaryDirectory() as directory:
            config = Path(directory) / "jobwire.toml"
            url = f"postgresql+asyncpg://{host}/{name}"
            config.write_text(f'[provider]\ntype = "postgres"\ndatabase_url = "{url}"\n')
            start = Path(args.log).stat().st_size
            commits = _commits(args.postgres, name)
            with sql_polling():
                asyncio.run(workload(config, args.jobs))
            commits = _commits(args.postgres, name) - commits
            with Path(args.log).open("rb") as log:
                log.seek(start)
                lines = log.read().decode(errors="replace").splitlines()
    finally:
        psql(args.postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    jobs = 2 * args.jobs
    calls: dict[str, int] = defaultdict(int)
    spent: dict[str, float] = defaultdict(float)
    for line in lines:
        if f"@{name} " not in line:
            continue
        found = _LINE.search(line)
        if found is None:
            continue
        kind = _kind(found.group(2))
        spent[kind] += float(found.group(1))
        if " parse " not in line and " bind " not in line:
            calls[kind] += 1
    total = sum(spent.values())
    print(f"\n{jobs:,} jobs; {commits / jobs:.3f} transactions per job (xact_commit)")
    print(f"server time per job, all statements: {1000 * total / jobs:.1f} µs\n")
    print("| statement | calls per job | server µs per job |")
    print("|---|---:|---:|")
    for kind in sorted(spent, key=spent.__getitem__, reverse=True)[: args.top]:
        print(f"| `{kind}` | {calls[kind] / jobs:.3f} | {1000 * spent[kind] / jobs:.1f} |")


if __name__ == "__main__":
    main()
