"""Helpers of the scheduler's integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from postgres import psql


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


def terminate_connections(database: str) -> int:
    """Kill every server process connected to ``database``; return how many."""
    killed = psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    return int(killed)
