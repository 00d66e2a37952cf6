"""Scheduler databases: a SQLite file per test and one PostgreSQL database per session.

PostgreSQL is the machine's server, reached with ``psql`` at
``SCHEDULER_TEST_POSTGRES_URL`` (default: user postgres on 127.0.0.1:5432).
The session creates a database with a unique name and drops it at the end;
each test that uses it starts from empty tables.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jobwire.gateway.scheduler.store import SchedulerStore

from postgres import emptied_url, temporary_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """Name of a database created for this test session, dropped at its end."""
    with temporary_database("jobwire_test") as name:
        yield name


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """SQLAlchemy URL of the session's database, its tables emptied."""
    return emptied_url(postgres_database, ["schedules", "schedule_fires", "scheduled_jobs"])


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty scheduler database: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/scheduler.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SchedulerStore]:
    """An open store on ``database_url``."""
    opened = SchedulerStore.from_url(database_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
