"""The SQL providers' tables, named with the configured prefix.

``<prefix>jobs`` holds every job, waiting, leased or finished (until pruned).
A job waits in one of the *waiting* states (pending, scheduled, failed) with
the time it may run, ``run_at``; a waiting job whose ``run_at`` has come is
pending as clients see it (:func:`effective_state`), so nothing has to move a
delayed job when it comes due. Claims take the ready jobs of a queue in
``(priority DESC, run_at, seq)`` order through the partial index
``<prefix>jobs_ready``. ``<prefix>gateways`` holds one heartbeat row per
running gateway; a leased job names its gateway (``gateway_id``).

The operators' tables (issue 18), shared by every gateway on the database:
``<prefix>paused_queues`` (one row per paused queue; claims skip them),
``<prefix>replay_requests`` (the count each ``RetryJobs`` request id
replayed) and ``<prefix>workers`` (the worker streams each gateway publishes,
and the drains other gateways asked of them).

Flow control (:mod:`._flow`): a job's ``concurrency_key`` ("" for none), the
partial indexes ``<prefix>jobs_lanes`` (a queue's waiting jobs by key, in
claim order) and ``<prefix>jobs_running`` (its processing jobs by key), and
``<prefix>queue_flow``: one row per queue with limits or keyed jobs, holding
the limits, the rate's token bucket and the rotation's place, locked by the
claims of that queue.

Times are epoch seconds (double precision): every comparison and order the
provider makes is then the same on PostgreSQL and SQLite.

Schema changes: ``<prefix>queue_schema`` holds one row, the version the tables
were created with (:data:`SCHEMA_VERSION`); see :func:`jobwire.gateway._db.open_schema`.
Forward only: :data:`MIGRATIONS` takes an older database to this version
(tables that are only new need no statement: ``create_all`` adds them).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Double,
    FromClause,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    case,
    literal,
    text,
)

from jobwire.gateway._models import DEFAULT_PRIORITY, JobState

SCHEMA_VERSION = 4
"""Version of the tables below; see the module docstring."""


def migrations(prefix: str) -> dict[int, tuple[str, ...]]:
    """The statements that take version ``n`` to ``n + 1``, by ``n``, for ``prefix``."""
    jobs = f"{prefix}jobs"
    return {
        # 1 -> 2: the operators' tables, which ``create_all`` creates.
        1: (),
        # 2 -> 3: flow control (``create_all`` creates <prefix>queue_flow).
        2: (
            f"ALTER TABLE {jobs} ADD COLUMN concurrency_key VARCHAR(256) NOT NULL DEFAULT ''",
            f"CREATE INDEX {prefix}jobs_lanes ON {jobs} "
            f"(queue, concurrency_key, priority DESC, run_at, seq) WHERE {WAITING_SQL}",
            f"CREATE INDEX {prefix}jobs_running ON {jobs} (queue, concurrency_key) "
            f"WHERE state = {PROCESSING}",
        ),
        # 3 -> 4: jobs_key holds only the jobs that have a key.
        3: (
            f"DROP INDEX {prefix}jobs_key",
            f"CREATE INDEX {prefix}jobs_key ON {jobs} (deduplication_key) WHERE {_HAS_KEY}",
        ),
    }


WAITING = (JobState.PENDING.value, JobState.SCHEDULED.value, JobState.FAILED.value)
"""States of a job that waits for its ``run_at``: a claim takes it once that has come."""
UNFINISHED = (*WAITING, JobState.PROCESSING.value)
"""States in which a job holds its deduplication key whatever the window."""
TERMINAL = tuple(state.value for state in JobState if state.is_terminal)
PROCESSING = JobState.PROCESSING.value
_HAS_KEY = "deduplication_key IS NOT NULL"


def _states(values: tuple[int, ...]) -> str:
    # Partial-index predicates are DDL: literal values, the same text on both databases.
    return f"state IN ({', '.join(str(v) for v in values)})"


WAITING_SQL = _states(WAITING)
"""The waiting-state test, literal: the predicate of the partial indexes over
waiting jobs, so that a prepared statement's generic plan can use them."""


@dataclass(frozen=True)
class Tables:
    """The provider's tables for one prefix, and the metadata that creates them."""

    metadata: MetaData
    jobs: Table
    gateways: Table
    schema: Table
    paused: Table
    replays: Table
    workers: Table
    flow: Table


def make_tables(prefix: str) -> Tables:
    """Build the tables named ``<prefix>jobs``, ``<prefix>gateways``, ``<prefix>queue_schema``.

    And the operators' tables; see the module docstring.
    """
    metadata = MetaData()
    seq_type = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: INTEGER is the rowid
    jobs = Table(
        f"{prefix}jobs",
        metadata,
        Column("seq", seq_type, primary_key=True, autoincrement=True),
        Column("id", String(64), nullable=False, unique=True),
        Column("queue", String(128), nullable=False),
        Column("type", String(256), nullable=False),
        Column(
            "priority", SmallInteger, nullable=False, server_default=text(str(DEFAULT_PRIORITY))
        ),
        Column("state", SmallInteger, nullable=False),
        Column("run_at", Double, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("content_type", String(256), nullable=False),
        Column("attributes", JSON, nullable=False),
        Column("max_retries", Integer, nullable=False),
        Column("timeout", Double),
        Column("deduplication_key", String(256)),
        Column("request_id", String(256), unique=True),
        Column("schedule", String(128), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("create_time", Double, nullable=False),
        Column("update_time", Double, nullable=False),
        Column("schedule_time", Double),
        Column("end_time", Double),
        Column("worker_id", String(256), nullable=False),
        Column("gateway_id", String(64)),
        Column("last_error", JSON),
        Column("result", LargeBinary),
        Column("result_content_type", String(256), nullable=False),
        Column("progress", LargeBinary),
        Column("concurrency_key", String(256), nullable=False, server_default=text("''")),
    )
    c = jobs.c
    waiting = text(WAITING_SQL)
    Index(
        f"{prefix}jobs_ready",
        c.queue,
        c.priority.desc(),
        c.run_at,
        c.seq,
        postgresql_where=waiting,
        sqlite_where=waiting,
    )
    # One unfinished job per deduplication key, across every gateway: a
    # concurrent second insert collides and reads the first one's job.
    holds_key = text(f"{_HAS_KEY} AND {_states(UNFINISHED)}")
    Index(
        f"{prefix}jobs_dedup",
        c.deduplication_key,
        unique=True,
        postgresql_where=holds_key,
        sqlite_where=holds_key,
    )
    # The jobs holding a key, finished ones too (the deduplication window).
    # Partial: most jobs have none, and every write of a row (enqueue,
    # claim, ending) would otherwise add an entry for its NULL.
    has_key = text(_HAS_KEY)
    Index(
        f"{prefix}jobs_key",
        c.deduplication_key,
        postgresql_where=has_key,
        sqlite_where=has_key,
    )
    leased = text(f"state = {PROCESSING}")
    Index(
        f"{prefix}jobs_leased",
        c.gateway_id,
        postgresql_where=leased,
        sqlite_where=leased,
    )
    finished = text(_states(TERMINAL))
    Index(
        f"{prefix}jobs_finished",
        c.end_time,
        postgresql_where=finished,
        sqlite_where=finished,
    )
    Index(f"{prefix}jobs_listing", c.queue, c.seq)
    Index(
        f"{prefix}jobs_lanes",
        c.queue,
        c.concurrency_key,
        c.priority.desc(),
        c.run_at,
        c.seq,
        postgresql_where=waiting,
        sqlite_where=waiting,
    )
    Index(
        f"{prefix}jobs_running",
        c.queue,
        c.concurrency_key,
        postgresql_where=leased,
        sqlite_where=leased,
    )
    gateways = Table(
        f"{prefix}gateways",
        metadata,
        Column("id", String(64), primary_key=True),
        Column("heartbeat", Double, nullable=False),
        Column("started", Double, nullable=False),
        Column("host", String(256), nullable=False),
    )
    schema = Table(
        f"{prefix}queue_schema",
        metadata,
        Column("version", Integer, primary_key=True, autoincrement=False),
    )
    paused = Table(
        f"{prefix}paused_queues",
        metadata,
        Column("queue", String(128), primary_key=True),
        Column("pause_time", Double, nullable=False),
    )
    replays = Table(
        f"{prefix}replay_requests",
        metadata,
        Column("request_id", String(256), primary_key=True),
        Column("count", Integer, nullable=False),
        Column("create_time", Double, nullable=False, index=True),
    )
    workers = Table(
        f"{prefix}workers",
        metadata,
        Column("session_id", String(128), primary_key=True),
        Column("gateway", String(64), nullable=False, index=True),
        Column("worker_id", String(256), nullable=False, index=True),
        Column("info", JSON, nullable=False),
        Column("seen_time", Double, nullable=False),
        Column("drain", Boolean, nullable=False),
    )
    flow = Table(
        f"{prefix}queue_flow",
        metadata,
        Column("queue", String(128), primary_key=True),
        # NULL: never configured (a queue with keyed jobs only).
        Column("limits", JSON(none_as_null=True)),
        Column("keyed", Boolean, nullable=False),
        Column("tokens", Double, nullable=False),
        Column("refilled", Double, nullable=False),
        Column("turn", String(256), nullable=False),  # the key served last,
        Column("served", Integer, nullable=False),  # and the jobs it got in its turn
        Column("update_time", Double, nullable=False),
    )
    return Tables(metadata, jobs, gateways, schema, paused, replays, workers, flow)


def effective_state(jobs: FromClause, now: float) -> ColumnElement[int]:
    """The state a client sees: a scheduled or failed job whose time came is pending."""
    c = jobs.c
    due = and_(c.state.in_([JobState.SCHEDULED.value, JobState.FAILED.value]), c.run_at <= now)
    return case((due, literal(JobState.PENDING.value)), else_=c.state)
