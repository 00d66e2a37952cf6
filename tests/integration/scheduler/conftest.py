"""Scheduler databases: a SQLite file per test and one PostgreSQL database per session.

PostgreSQL is the machine's server, reached with ``psql`` at
``SCHEDULER_TEST_POSTGRES_URL`` (default: user postgres on 127.0.0.1:5432).
The session creates a database with a unique name and drops it at the end;
each test that uses it starts from empty tables.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from integration.scheduler.helpers import ADMIN_URL, psql
from sqlalchemy.engine import make_url

from jobwire.gateway.scheduler.store import SchedulerStore

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """Name of a database created for this test session, dropped at its end."""
    try:
        psql("SELECT 1")
    except (OSError, RuntimeError) as error:
        message = f"PostgreSQL not reachable at {ADMIN_URL} ({error}); see scripts/services.py"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"jobwire_test_{os.getpid()}_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        # FORCE: a gateway process a failed test left behind must not keep it alive.
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """SQLAlchemy URL of the session's database, its tables emptied."""
    psql(
        "DO $$ BEGIN IF to_regclass('schedules') IS NOT NULL THEN "
        "TRUNCATE schedules, schedule_fires, scheduled_jobs; END IF; END $$",
        postgres_database,
    )
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=postgres_database)
    return url.render_as_string(hide_password=False)


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
