"""Helpers of the scheduler's integration tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "SCHEDULER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""libpq URL of the PostgreSQL server the tests create their database on."""


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **span: float) -> datetime:
        self.now += timedelta(**span)
        return self.now


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true, looking every 20 ms."""
    async with asyncio.timeout(timeout):
        # Polling on purpose: the state lives in a database or another process.
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def psql(sql: str, database: str = "postgres") -> str:
    """Run ``sql`` with psql as the admin user; return its unaligned output."""
    url = make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)
    result = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode:
        raise RuntimeError(f"psql failed: {result.stderr.strip()}")
    return result.stdout.strip()


def terminate_connections(database: str) -> int:
    """Kill every server process connected to ``database``; return how many."""
    killed = psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    return int(killed)
