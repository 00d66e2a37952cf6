"""The ``[provider]`` table: one settings model per queue backend, picked by ``type``."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Discriminator, Field, SecretStr, Tag, field_validator, model_validator

from jobwire.gateway._config_types import MiB, Section, Span, check_database_url


class RetrySettings(Section):
    """Backoff between attempts of a failed job: ``initial * multiplier**(n-1)``, jittered."""

    initial_backoff: Span = timedelta(seconds=1)
    """Wait after the first failed attempt."""
    max_backoff: Span = timedelta(minutes=5)
    """Longest wait between attempts."""
    multiplier: float = Field(default=2.0, ge=1.0)
    """Growth of the wait per failed attempt."""
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    """Fraction of the delay drawn at random, so failed jobs do not retry in lockstep."""


class _ProviderBase(Section):
    retry: RetrySettings = RetrySettings()
    """Backoff between attempts (``[provider.retry]``)."""
    dedup_window: Span = timedelta(0)
    """How long a deduplication key stays taken after its job finished."""


class MemoryProviderSettings(_ProviderBase):
    """``type = "memory"``: in-process queues; jobs do not survive a restart."""

    type: Literal["memory"] = "memory"
    max_history: int = Field(default=10_000, ge=0)
    """Finished jobs kept for ``GetJob``/``ListJobs``; the oldest are forgotten first."""


class RecordsProviderSettings(_ProviderBase):
    """Settings shared by the broker providers (``sqs`` and ``rabbitmq``): their job records."""

    database_url: str | None = None
    """Database of the job records; None: the scheduler's ``database_url``."""
    history_retention: Span = Field(default=timedelta(days=1), gt=timedelta(0))
    """How long finished jobs stay in the records for ``GetJob`` and ``ListJobs``
    (on RabbitMQ, dead jobs' messages in the dead-letter queue too)."""
    sync_interval: Span = Field(default=timedelta(seconds=1), gt=timedelta(0))
    """How often the gateway looks for changes other gateways made to jobs it
    leases (cancellation) or that clients watch; bounds how late those are seen."""

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return value if value is None else check_database_url(value)


_SQS_MAX_VISIBILITY = timedelta(hours=12)


class SqsProviderSettings(RecordsProviderSettings):
    """``type = "sqs"``: AWS SQS queues through aiobotocore (the gateway's ``sqs`` extra).

    Credentials come from the standard AWS chain (environment variables, the
    shared config and credentials files, instance or task roles); this table
    holds none. Job records (state, attempts, results) live in ``database_url``;
    give every gateway on the same queues the same PostgreSQL database.
    """

    type: Literal["sqs"] = "sqs"
    region: str | None = None
    """AWS region, e.g. ``eu-west-1``; None: from the AWS chain (``AWS_DEFAULT_REGION``)."""
    profile: str | None = None
    """Named profile of the shared AWS config files; None: the chain's default."""
    endpoint_url: str | None = None
    """SQS endpoint for LocalStack, moto or ElasticMQ; None: AWS's own."""
    queue_urls: dict[str, str]
    """SQS queue URL of each jobwire queue name; must name ``default``. A URL
    ending in ``.fifo`` is a FIFO queue."""
    dead_letter_queue_url: str | None = None
    """Where dead jobs' messages go (sent there, then deleted); None: deleted."""
    visibility_timeout: Span = Field(
        default=timedelta(seconds=30), ge=timedelta(seconds=1), le=_SQS_MAX_VISIBILITY
    )
    """Longest SQS visibility the gateway sets at a time. A lease this long or
    shorter is one visibility; a longer lease is renewed by the gateway while it
    lasts, so the messages of a gateway that died come back within this time."""
    wait_time: Span = Field(
        default=timedelta(seconds=20), ge=timedelta(seconds=1), le=timedelta(seconds=20)
    )
    """Long-polling wait of one ``ReceiveMessage`` (whole seconds, at most 20)."""
    max_message_bytes: int = Field(default=MiB, gt=0, le=MiB)
    """Largest SQS message (body and attributes); larger jobs are refused at enqueue.
    SQS allows 1 MiB; some emulators and older setups 256 KiB."""

    @field_validator("queue_urls")
    @classmethod
    def _check_queue_urls(cls, value: dict[str, str]) -> dict[str, str]:
        if "default" not in value:
            raise ValueError('must name the `default` queue, e.g. {default = "https://…"}')
        for name, url in value.items():
            if not url.startswith(("https://", "http://")):
                raise ValueError(f"queue {name!r}: expected an SQS queue URL, got {url!r}")
        return value

    @field_validator("dead_letter_queue_url", "endpoint_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value


_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RedisProviderSettings(_ProviderBase):
    """``type = "redis"``: queues in Redis through redis-py (the gateway's ``redis`` extra).

    Any number of gateways may share one Redis (and one ``key_prefix``); each
    state change is one Lua script. Run Redis with ``maxmemory-policy
    noeviction`` and, for durability, ``appendonly yes`` (README, "Redis").
    """

    type: Literal["redis"] = "redis"
    url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """``redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]``, ``rediss://…`` for TLS, or
    ``unix:///PATH?db=N``. A secret: it may hold a password, and is never logged."""
    username: str | None = None
    """ACL user name; overrides the URL's."""
    password: SecretStr | None = None
    """Password; overrides the URL's (e.g. from ``JOBWIRE_PROVIDER__PASSWORD``)."""
    tls_ca_file: Path | None = None
    """PEM bundle of the authorities a ``rediss://`` server's certificate is checked
    against; None: the system's."""
    key_prefix: str = "jobwire"
    """Prefix of every key, so that deployments can share one Redis. Keys are
    ``{PREFIX}:…``: one hash slot, as Lua scripts on a cluster need."""
    max_history: int = Field(default=10_000, ge=0)
    """Finished jobs kept for ``GetJob``/``ListJobs``; the oldest are forgotten first."""
    history_retention: Span = Field(default=timedelta(days=1), gt=timedelta(0))
    """Finished jobs older than this are forgotten, whatever their number."""
    gateway_timeout: Span = Field(
        default=timedelta(seconds=10), ge=timedelta(seconds=1), le=timedelta(minutes=10)
    )
    """How long a gateway may miss its heartbeats (sent every third of this)
    before another gateway takes back the jobs it leased, each counted as an attempt."""
    connect_timeout: Span = Field(default=timedelta(seconds=5), gt=timedelta(0))
    """How long connecting to Redis may take."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("expected a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("key_prefix")
    @classmethod
    def _check_key_prefix(cls, value: str) -> str:
        if not _KEY_PREFIX.match(value):
            raise ValueError("use 1-64 letters, digits, '.', '_', ':' or '-'")
        return value


_AMQP_SCHEMES = ("amqp://", "amqps://")
_QUEUE_PREFIX = re.compile(r"^[A-Za-z0-9._:-]{0,64}$")


class RabbitMqProviderSettings(RecordsProviderSettings):
    """``type = "rabbitmq"``: RabbitMQ queues through aio-pika (the gateway's ``rabbitmq`` extra).

    Any number of gateways may share one broker (and one ``queue_prefix``).
    Job records (state, attempts, results) live in ``database_url``; give every
    gateway on the same queues the same PostgreSQL database. README, "RabbitMQ",
    says what is declared and which broker settings to use.
    """

    type: Literal["rabbitmq"] = "rabbitmq"
    url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    """``amqp://[USER[:PASSWORD]@]HOST[:PORT][/VHOST]``, ``amqps://…`` for TLS (the
    vhost URL-encoded: ``%2F`` is ``/``). A secret: it may hold a password, and is
    never logged."""
    username: str | None = None
    """User name; overrides the URL's."""
    password: SecretStr | None = None
    """Password; overrides the URL's (e.g. from ``JOBWIRE_PROVIDER__PASSWORD``)."""
    queue_prefix: str = "jobwire."
    """Prefix of every name jobwire uses on the broker: queue ``NAME`` is
    ``{prefix}NAME``, dead jobs go to ``{prefix}dead``, delays through exchange
    ``{prefix}delay`` and queues ``{prefix}delay.N``."""
    queue_type: Literal["quorum", "classic"] = "quorum"
    """Type of the job queues: replicated, durable quorum queues, or classic ones."""
    declare: bool = True
    """Declare the queues and exchange jobwire needs; False: check that they exist
    and refuse (naming what is missing) when they do not."""
    delivery_limit: int = Field(default=50, ge=0)
    """Quorum queues' ``x-delivery-limit``: a message returned this many times
    without an answer is dead-lettered by the broker itself (a backstop for
    crash loops that outrun the job records; 0: none)."""
    connect_timeout: Span = Field(default=timedelta(seconds=5), gt=timedelta(0))
    """How long connecting to the broker may take."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(_AMQP_SCHEMES):
            raise ValueError("expected an amqp:// or amqps:// URL")
        return value

    @field_validator("queue_prefix")
    @classmethod
    def _check_queue_prefix(cls, value: str) -> str:
        if not _QUEUE_PREFIX.match(value) or value.startswith("amq."):
            raise ValueError(
                "use at most 64 letters, digits, '.', '_', ':' or '-', not starting with 'amq.'"
            )
        return value


_TABLE_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,30}$")


class _SqlProviderBase(_ProviderBase):
    """Settings shared by the SQL providers (``postgres`` and ``sqlite``)."""

    table_prefix: str = "jobwire_"
    """Prefix of the provider's table names (``<prefix>jobs``, ``<prefix>gateways``,
    ``<prefix>queue_schema``), so that jobwire can share a database."""
    pool_size: int = Field(default=10, gt=0, le=1000)
    """Connections the gateway keeps open to the database (PostgreSQL)."""
    history_retention: Span = Field(default=timedelta(days=1), gt=timedelta(0))
    """How long finished jobs stay for ``GetJob`` and ``ListJobs``."""
    max_history: int = Field(default=100_000, ge=0)
    """Most finished jobs kept; the oldest are pruned first."""
    prune_interval: Span = Field(default=timedelta(minutes=1), gt=timedelta(0))
    """How often finished jobs beyond the retention are pruned (in batches)."""
    poll_interval: Span = Field(default=timedelta(seconds=5), gt=timedelta(0))
    """Longest an idle worker stream waits before looking at the table again;
    wake-ups (an enqueue here, a NOTIFY from another gateway, the next due
    job) come sooner, so this only bounds a missed notification."""
    heartbeat_interval: Span = Field(default=timedelta(seconds=1), gt=timedelta(0))
    """How often the gateway records that it is alive."""
    heartbeat_timeout: Span = Field(default=timedelta(seconds=5), gt=timedelta(0))
    """A gateway silent this long is dead: another gateway releases its leases
    (each counted as an attempt)."""

    @field_validator("table_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        if not _TABLE_PREFIX.match(value):
            raise ValueError(
                "expected lower-case letters, digits and underscores "
                f"(at most 31, not starting with a digit), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_spans(self) -> Self:
        if self.heartbeat_timeout <= self.heartbeat_interval:
            raise ValueError("heartbeat_timeout must be longer than heartbeat_interval")
        if self.history_retention < self.dedup_window:
            raise ValueError(
                "history_retention must be at least dedup_window "
                "(a pruned job no longer holds its deduplication key)"
            )
        return self


class PostgresProviderSettings(_SqlProviderBase):
    """``type = "postgres"``: jobs in PostgreSQL; any number of gateways on one database.

    Needs the gateway's ``postgres`` extra (asyncpg).
    """

    type: Literal["postgres"] = "postgres"
    database_url: str | None = None
    """``postgresql+asyncpg://USER@HOST/DB``; None: the scheduler's ``database_url``
    when that is PostgreSQL."""

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("postgresql+asyncpg://"):
            raise ValueError(
                f"expected postgresql+asyncpg://USER@HOST/DB, got {value.split('://')[0]!r}://…"
            )
        return value


class SqliteProviderSettings(_SqlProviderBase):
    """``type = "sqlite"``: jobs in a SQLite file (WAL); one gateway per file."""

    type: Literal["sqlite"] = "sqlite"
    database_url: str = "sqlite+aiosqlite:///jobwire-queue.db"
    """``sqlite+aiosqlite:///PATH`` of the queue's file (a second gateway on the
    same file refuses to start)."""

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith("sqlite+aiosqlite:///") or value.endswith(":memory:"):
            raise ValueError(
                f"expected sqlite+aiosqlite:///PATH (a file), got {value.split('://')[0]!r}://…"
            )
        return value


def _provider_type(value: object) -> str:
    # A [provider] table without `type` means the embedded default.
    if isinstance(value, dict):
        return str(value.get("type", "memory"))
    return str(getattr(value, "type", "memory"))


# One entry per provider module; `type` picks the model (and, in the registry, the factory).
ProviderSettings = Annotated[
    Annotated[MemoryProviderSettings, Tag("memory")]
    | Annotated[SqsProviderSettings, Tag("sqs")]
    | Annotated[RedisProviderSettings, Tag("redis")]
    | Annotated[RabbitMqProviderSettings, Tag("rabbitmq")]
    | Annotated[PostgresProviderSettings, Tag("postgres")]
    | Annotated[SqliteProviderSettings, Tag("sqlite")],
    Discriminator(_provider_type),
]
