"""The machine's PostgreSQL for tests: throwaway databases, emptied between tests.

The server is reached with ``psql`` at ``SCHEDULER_TEST_POSTGRES_URL`` (default:
user postgres on 127.0.0.1:5432; ``scripts/services.py`` starts it). Without a
server the PostgreSQL tests skip, except under CI, where they fail.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "SCHEDULER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
"""libpq URL of the PostgreSQL server the tests create their databases on."""


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


@contextmanager
def temporary_database(prefix: str) -> Iterator[str]:
    """Create a uniquely named database and drop it afterwards; yield its name."""
    try:
        psql("SELECT 1")
    except (OSError, RuntimeError) as error:
        message = f"PostgreSQL not reachable at {ADMIN_URL} ({error}); see scripts/services.py"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        # FORCE: a gateway process a failed test left behind must not keep it alive.
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def emptied_url(database: str, tables: Sequence[str]) -> str:
    """Empty ``tables`` of ``database`` (those that exist) and return its asyncpg URL."""
    names = ", ".join(f"'{table}'" for table in tables)
    psql(
        "DO $$ DECLARE t text; BEGIN "
        f"FOREACH t IN ARRAY ARRAY[{names}] LOOP "
        "IF to_regclass(t) IS NOT NULL THEN EXECUTE 'TRUNCATE ' || t || ' CASCADE'; END IF; "
        "END LOOP; END $$",
        database,
    )
    return asyncpg_url(database)


def asyncpg_url(database: str) -> str:
    """SQLAlchemy asyncpg URL of ``database`` on the test server."""
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


def terminate_connections(database: str) -> int:
    """Kill every server process connected to ``database``; return how many."""
    killed = psql(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    return int(killed)
