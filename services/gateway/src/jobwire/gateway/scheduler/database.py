"""The scheduler's connection to its database: sessions, transactions, schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from jobwire.gateway._db import AWAY, OUR_FAULT, brief, open_schema
from jobwire.gateway._errors import UnavailableError
from jobwire.gateway.scheduler.models import MIGRATIONS, SCHEMA_VERSION, Base, SchemaVersion

# Key of the PostgreSQL advisory lock that serializes table creation when
# several gateways start at once.
_SCHEMA_LOCK = 0x6A6F62776972


class StoreBase:
    """An engine on SQLite or PostgreSQL and transactions on it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgres = engine.dialect.name == "postgresql"

    async def open(self) -> None:
        """Create missing tables and check the schema version.

        Raises:
            RuntimeError: the database is unreachable or holds another schema version.
        """
        await open_schema(
            self.engine,
            Base.metadata,
            SchemaVersion,
            SCHEMA_VERSION,
            lock_key=_SCHEMA_LOCK,
            what="scheduler",
            migrations=MIGRATIONS,
        )

    async def close(self) -> None:
        """Close every connection."""
        await self.engine.dispose()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; a lost or refused database is UNAVAILABLE."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except OUR_FAULT:
            raise
        except AWAY as error:
            # Transient, so callers may retry.
            raise UnavailableError(f"scheduler database unavailable: {brief(error)}") from error

    def _insert(self, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
        if self._postgres:
            return postgresql.insert(model)
        return sqlite.insert(model)


_Select = TypeVar("_Select", bound=Select[Any])


def locked(stmt: _Select, postgres: bool, *, skip: bool = False) -> _Select:
    """Return ``stmt`` selecting FOR UPDATE on PostgreSQL (SKIP LOCKED with ``skip``)."""
    # SQLite would silently ignore FOR UPDATE; say so in the code instead.
    return stmt.with_for_update(skip_locked=skip) if postgres else stmt
