"""procrastinate on PostgreSQL (psycopg 3), one worker at concurrency 8, LISTEN/NOTIFY on.

The worker runs as procrastinate documents it: ``procrastinate worker`` with
``listen_notify`` on (its default), woken by the ``NOTIFY`` each defer sends,
and its default ``fetch_job_polling_interval`` (5 s), the fallback poll. The
no-op handlers each insert their start time as a row through the worker's
own connection pool (one row per job: 8 handlers updating one counter row
would wait for each other's row lock, a cost the Redis peers' ``INCR`` does
not have; the table is unlogged, as Redis keeps the counter without a log);
stamp jobs send their start time with ``NOTIFY``. The database is
a throwaway one that bench/compare.py creates and drops.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from procrastinate import App, JobContext, PsycopgConnector

from peers.common import CONCURRENCY, POSTGRES_DATABASE, POSTGRES_URL, Peer, script

DSN = f"{POSTGRES_URL}/{POSTGRES_DATABASE}"
app = App(connector=PsycopgConnector(conninfo=DSN))


@app.task(name="noop", queue="bench", pass_context=True)
async def noop(context: JobContext) -> None:
    started = time.time()
    await context.app.connector.execute_query_async(
        "INSERT INTO bench_done (started) VALUES (%(started)s)", started=started
    )


@app.task(name="stamp", queue="bench", pass_context=True)
async def stamp(context: JobContext) -> None:
    started = time.time()
    await context.app.connector.execute_query_async(
        "SELECT pg_notify('bench_stamp', %(started)s)", started=repr(started)
    )


def create_database() -> str | None:
    """Create the throwaway database; None, or why PostgreSQL is not usable."""
    try:
        with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True, connect_timeout=2) as db:
            db.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE}")
            db.execute(f"CREATE DATABASE {POSTGRES_DATABASE}")
    except psycopg.Error as error:
        return f"PostgreSQL not usable at {POSTGRES_URL} ({error})"
    return None


def drop_database() -> None:
    with psycopg.connect(f"{POSTGRES_URL}/postgres", autocommit=True, connect_timeout=2) as db:
        db.execute(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")


class ProcrastinatePeer(Peer):
    name = "procrastinate"
    backend = "PostgreSQL"
    listener: psycopg.AsyncConnection[Any]

    def worker_command(self) -> list[str]:
        return [
            *(script("procrastinate"), "--app", "peers.procrastinate_peer.app", "worker"),
            *("--concurrency", str(CONCURRENCY), "--queues", "bench"),
        ]

    async def open(self) -> None:
        await app.open_async()
        exists = await app.connector.execute_query_one_async(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"
        )
        if not exists["present"]:
            await app.schema_manager.apply_schema_async()
        await app.connector.execute_query_async(
            "DROP TABLE IF EXISTS bench_done;"
            "CREATE UNLOGGED TABLE bench_done (started double precision NOT NULL);"
            "TRUNCATE procrastinate_jobs CASCADE;"
        )
        self.listener = await psycopg.AsyncConnection.connect(DSN, autocommit=True)
        await self.listener.execute("LISTEN bench_stamp")

    async def close(self) -> None:
        await self.listener.close()
        await app.close_async()

    async def reset(self) -> None:
        await app.connector.execute_query_async("TRUNCATE bench_done")

    async def enqueue_noop(self) -> None:
        await noop.defer_async()

    async def done(self) -> tuple[int, float | None]:
        row = await app.connector.execute_query_one_async(
            "SELECT count(*) AS done, min(started) AS first FROM bench_done"
        )
        return int(row["done"]), row["first"]

    async def stamp(self) -> float:
        async def first_notify() -> float:
            async for notify in self.listener.notifies(timeout=10, stop_after=1):
                return float(notify.payload)
            raise TimeoutError("procrastinate: stamp job did not start within 10 s")

        waiting = asyncio.ensure_future(first_notify())
        await asyncio.sleep(0)
        await stamp.defer_async()
        return await waiting


peer = ProcrastinatePeer
