"""SQL plumbing shared by every part of the gateway that keeps tables.

The scheduler, the SQS provider's job records and the SQL queue providers
all run on SQLAlchemy 2 async, on SQLite (aiosqlite) or PostgreSQL (asyncpg):
one engine factory, one time type, one way to create and version a schema,
one JSON form of a job's errors, one reading of a ``JobFilter`` in SQL, and
one translation of a database that is away into ``UNAVAILABLE``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Dialect,
    LargeBinary,
    MetaData,
    SQLColumnExpression,
    Table,
    TypeDecorator,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    NotSupportedError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from jobwire.gateway._errors import StartError, UnavailableError, install_hint
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import Failure, JobFilter, JobRecord
from jobwire.v1 import job_pb2

# Errors that are the gateway's (or the caller's) doing, not the database
# being away; they propagate as they are.
OUR_FAULT = (IntegrityError, ProgrammingError, DataError, NotSupportedError)
# Connection refused or dropped, server restarting, database not accepting
# connections, locked (SQLite), pool exhausted: all transient.
AWAY = (DBAPIError, SQLAlchemyTimeoutError, OSError)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC ``datetime`` on every database.

    PostgreSQL stores ``timestamptz``. SQLite has no time type: SQLAlchemy
    stores fixed-width text, which sorts and compares correctly only if every
    value is in the same zone, so values are converted to naive UTC on the way
    in and made aware again on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC (naive on SQLite)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value} given where an aware one is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Return an aware UTC datetime."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TYPE_ANNOTATIONS: dict[Any, Any] = {
    datetime: UtcDateTime(),
    dict[str, Any]: JSON(),
    bytes: LargeBinary(),
}
"""``type_annotation_map`` of every declarative base: aware times, JSON, bytes."""


def create_engine(
    url: str,
    *,
    what: str = "database_url",
    pool_size: int | None = None,
    synchronous: bool = True,
) -> AsyncEngine:
    """Return an engine for ``url``: SQLite waits for its lock, PostgreSQL pings on checkout.

    ``synchronous=False``: a commit returns before it is on disk, for writes
    that may be lost (PostgreSQL's ``synchronous_commit = off``; SQLite's WAL
    with ``synchronous = NORMAL``, which a crash of the process never loses,
    only one of the machine).

    Raises:
        RuntimeError: the URL names PostgreSQL but asyncpg is not installed.
    """
    if make_url(url).get_backend_name() == "sqlite":
        from sqlalchemy import event

        # The busy timeout makes a writer wait for the lock instead of failing.
        engine = _create_async_engine(url, connect_args={"timeout": 30})
        pragmas = (*_SQLITE_PRAGMAS, "synchronous=FULL" if synchronous else "synchronous=NORMAL")
        event.listen(engine.sync_engine, "connect", functools.partial(_set_pragmas, pragmas))
        return engine
    options: dict[str, Any] = {"pool_pre_ping": True}
    if pool_size is not None:
        options["pool_size"] = pool_size
    if not synchronous:
        options["connect_args"] = {"server_settings": {"synchronous_commit": "off"}}
    try:
        # pool_pre_ping: a connection the server dropped (restart, failover,
        # pg_terminate_backend) is replaced on checkout instead of failing a query.
        return _create_async_engine(url, **options)
    except ModuleNotFoundError as error:
        raise StartError(
            f"{what} needs the {error.name} driver; "
            + install_hint("'./services/gateway[postgres]'"),
            key=what if "." in what else None,
        ) from None


# WAL lets readers proceed while a writer writes; foreign keys make deleting
# a parent row delete its children.
_SQLITE_PRAGMAS = ("journal_mode=WAL", "foreign_keys=ON")


def _set_pragmas(pragmas: Sequence[str], dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in pragmas:
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


async def open_schema(
    engine: AsyncEngine,
    metadata: MetaData,
    version_table: type[Any] | Table,
    version: int,
    *,
    lock_key: int,
    what: str,
    migrations: Mapping[int, Sequence[str]] | None = None,
) -> None:
    """Create missing tables and check (or record) the schema version.

    ``version_table`` is a mapped class (or a ``Table``) with an integer
    primary key ``version``; it holds one row. Several gateways starting at once on
    PostgreSQL take turns through an advisory lock. ``migrations[n]`` are the
    SQL statements that take version ``n`` to ``n + 1``: an older database is
    upgraded in the same transaction (forward only).

    Raises:
        RuntimeError: the database is unreachable or holds another schema version.
    """
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            await conn.run_sync(metadata.create_all)
            column: Any = (
                version_table.c.version
                if isinstance(version_table, Table)
                else version_table.version
            )
            stored = await conn.scalar(select(column))
            steps = migrations or {}
            if stored is None:
                await conn.execute(insert(version_table).values(version=version))
            elif stored < version and all(n in steps for n in range(stored, version)):
                for n in range(stored, version):
                    for statement in steps[n]:
                        await conn.execute(text(statement))
                await conn.execute(update(version_table).values(version=version))
            elif stored != version:
                raise RuntimeError(
                    f"the {what} database has schema version {stored}; this gateway "
                    f"knows version {version} (upgrade the gateway)"
                )
    except AWAY as error:
        where = engine.url.render_as_string(hide_password=True)
        raise RuntimeError(f"cannot open the {what} database {where}: {brief(error)}") from error


@asynccontextmanager
async def transaction(engine: AsyncEngine, what: str) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction; a lost or refused database is ``UNAVAILABLE``."""
    try:
        async with engine.begin() as conn:
            yield conn
    except OUR_FAULT:
        raise
    except AWAY as error:
        raise UnavailableError(f"{what} database unavailable: {brief(error)}") from error


def brief(error: BaseException) -> str:
    """The first line of a database error (SQLAlchemy's carry the SQL and a link)."""
    return str(getattr(error, "orig", None) or error).splitlines()[0][:200]


def failure_json(failure: Failure | None) -> dict[str, Any] | None:
    """A failure as a JSON object, or None."""
    return None if failure is None else dataclasses.asdict(failure)


def error_json(record: JobRecord) -> dict[str, Any] | None:
    """A job's ``last_error`` column: its last error, every attempt's under ``errors``.

    One JSON column holds both, so the history needed no schema change.
    """
    stored = failure_json(record.last_error)
    if stored is not None and record.errors:
        stored["errors"] = [dataclasses.asdict(failure) for failure in record.errors]
    return stored


def errors_of(stored: Mapping[str, Any] | None) -> tuple[Failure | None, tuple[Failure, ...]]:
    """A job's last error and every attempt's, read back from its ``last_error`` column."""
    if stored is None:
        return None, ()
    error = dict(stored)
    history = error.pop("errors", [])
    return Failure(**error), tuple(Failure(**item) for item in history)


def record_of_row(row: Any, **kept_apart: Any) -> JobRecord:
    """A job record from a row of a jobs table: the columns every store keeps alike.

    ``kept_apart`` gives the fields each store keeps its own way (state,
    times, priority), already converted.
    """
    progress = row["progress"]
    last_error, errors = errors_of(row["last_error"])
    return JobRecord(
        id=row["id"],
        queue=row["queue"],
        type=row["type"],
        payload=row["payload"],
        content_type=row["content_type"],
        attributes=dict(row["attributes"]),
        max_retries=row["max_retries"],
        timeout=row["timeout"],
        deduplication_key=row["deduplication_key"] or "",
        attempt=row["attempt"],
        last_error=last_error,
        errors=errors,
        result=row["result"],
        result_content_type=row["result_content_type"],
        progress=job_pb2.JobProgress.FromString(progress) if progress is not None else None,
        worker_id=row["worker_id"],
        schedule=row["schedule"],
        **kept_apart,
    )


def selector_clauses(
    selector: JobSelector,
    *,
    queue: SQLColumnExpression[str],
    job_type: SQLColumnExpression[str],
    job_id: SQLColumnExpression[str],
    create_time: SQLColumnExpression[Any],
    as_stored: Callable[[float], Any],
    attributes: Any,
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``selector``'s queue, type, ids, creation times and attributes.

    ``as_stored`` turns a selector's epoch seconds into ``create_time``'s type;
    ``attributes`` is a JSON column (SQLAlchemy renders ``->>`` on PostgreSQL,
    ``json_extract`` on SQLite). Its states and error text are each store's
    own: they are stored differently.
    """
    clauses: list[ColumnElement[bool]] = []
    if selector.queue:
        clauses.append(queue == selector.queue)
    if selector.type:
        clauses.append(job_type == selector.type)
    if selector.ids:
        clauses.append(job_id.in_(sorted(selector.ids)))
    if selector.created_after is not None:
        clauses.append(create_time >= as_stored(selector.created_after))
    if selector.created_before is not None:
        clauses.append(create_time < as_stored(selector.created_before))
    for key, value in selector.attributes:
        clauses.append(attributes[key].as_string() == value)
    return clauses


def filter_clauses(
    where: JobFilter,
    queue: SQLColumnExpression[str],
    job_type: SQLColumnExpression[str],
    job_id: SQLColumnExpression[str],
) -> list[ColumnElement[bool]]:
    """The WHERE clauses of ``where``'s queue, type and id prefix on these columns.

    Its states are each store's own: they are stored differently everywhere.
    """
    clauses: list[ColumnElement[bool]] = []
    if where.queue:
        clauses.append(queue == where.queue)
    if where.type:
        clauses.append(job_type == where.type)
    if where.id_prefix:
        clauses.append(job_id.startswith(where.id_prefix, autoescape=True))
    return clauses
