"""Gateway configuration: pydantic models read from TOML and ``JOBWIRE_*`` variables."""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("jobwire_config_file", default=None)

MiB = 1024 * 1024
_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def _span(value: object) -> object:
    # Environment variables arrive as text: accept "30", "30s", "250ms", "5m",
    # "1h", "1d" as well as what pydantic takes (numbers, ISO 8601 "PT30S").
    if isinstance(value, str) and (match := _SPAN.match(value)):
        return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
    return value


Span = Annotated[timedelta, BeforeValidator(_span)]
"""A duration: seconds as a number, "30s", "250ms", "5m", "1h", "1d" or ISO 8601."""


class _Section(BaseModel):
    # A typo in a key must fail at start, naming the key.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


Role = Literal["producer", "worker", "admin"]
"""What a token may call: producer (QueueService, ScheduleService), worker
(WorkerService) or admin (everything)."""

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class TokenSettings(_Section):
    """One accepted bearer token, stored as the SHA-256 of the token, never the token."""

    role: Role
    """What the token may call."""
    sha256: SecretStr
    """Lowercase hex SHA-256 of the token (``python -m jobwire.gateway.auth``).
    A secret so that it is masked wherever the settings are printed or logged."""
    name: str = ""
    """Label naming the token's holder in logs, e.g. ``billing-service``."""

    @field_validator("sha256")
    @classmethod
    def _check_sha256(cls, value: SecretStr) -> SecretStr:
        if not _SHA256_HEX.match(value.get_secret_value()):
            raise ValueError("expected 64 lowercase hex digits (the SHA-256 of the token)")
        return value


class AuthSettings(_Section):
    """The ``[server.auth]`` table: bearer-token authentication with roles."""

    enabled: bool = False
    """Refuse every RPC but health checks without a valid token."""
    tokens: list[TokenSettings] = []
    """Accepted tokens and their roles; in the environment as JSON, e.g.
    ``JOBWIRE_SERVER__AUTH__TOKENS='[{"role": "worker", "sha256": "…"}]'``."""

    @model_validator(mode="after")
    def _check_tokens(self) -> Self:
        if self.enabled and not self.tokens:
            raise ValueError("auth is enabled but no tokens are configured")
        return self


class TLSSettings(_Section):
    """The ``[server.tls]`` table: TLS, and mutual TLS with ``client_ca``."""

    cert: Path
    """PEM certificate chain of the gateway."""
    key: Path
    """PEM private key of ``cert``."""
    client_ca: Path | None = None
    """PEM certificate authority whose client certificates are accepted (mutual TLS)."""
    require_client_cert: bool = False
    """Refuse clients without a certificate signed by ``client_ca``."""

    @model_validator(mode="after")
    def _check_client_ca(self) -> Self:
        if self.require_client_cert and self.client_ca is None:
            raise ValueError("require_client_cert needs client_ca")
        return self


class ServerSettings(_Section):
    """The ``[server]`` table: listening address, limits, leases and shutdown."""

    listen: str = "127.0.0.1:50051"
    """``HOST:PORT`` to listen on; port 0 picks a free port."""
    max_payload_bytes: int = Field(default=MiB, gt=0, le=64 * MiB)
    """Largest job payload accepted at enqueue."""
    max_message_bytes: int = Field(default=8 * MiB, gt=0)
    """Largest gRPC message the server receives or sends."""
    max_batch_size: int = Field(default=1000, gt=0)
    """Most jobs in one ``EnqueueJobs`` call."""
    max_page_size: int = Field(default=1000, gt=0)
    """Largest ``page_size`` accepted by list calls."""
    max_in_flight_limit: int = Field(default=1000, gt=0)
    """Most credits one worker stream may hold."""
    max_attributes: int = Field(default=64, ge=0)
    """Most attributes per job."""
    max_streams: int = Field(default=1000, gt=0)
    """Most long-lived streams (worker streams and ``WatchJob``) open at once."""
    lease_duration: Span = timedelta(seconds=30)
    """Default lease length of a delivery."""
    min_lease_duration: Span = timedelta(seconds=1)
    """Shortest lease a worker may ask for."""
    max_lease_duration: Span = timedelta(minutes=30)
    """Longest lease a worker may ask for."""
    default_job_timeout: Span | None = None
    """Attempt timeout of jobs enqueued without one; None means no limit."""
    shutdown_grace: Span = timedelta(seconds=30)
    """How long SIGTERM waits for workers to finish in-flight jobs."""
    reflection: bool = True
    """Serve gRPC server reflection (for grpcurl and ``buf curl``)."""
    metrics_listen: str | None = None
    """``HOST:PORT`` of a Prometheus ``/metrics`` endpoint (port 0: a free port); None: off."""
    auth: AuthSettings = AuthSettings()
    """Bearer-token authentication (``[server.auth]``); off by default."""
    tls: TLSSettings | None = None
    """TLS (``[server.tls]``); None serves plaintext."""

    @field_validator("listen", "metrics_listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"expected HOST:PORT, got {value!r}")
        return value


class RetrySettings(_Section):
    """Backoff between attempts of a failed job: ``initial * multiplier**(n-1)``, jittered."""

    initial_backoff: Span = timedelta(seconds=1)
    """Wait after the first failed attempt."""
    max_backoff: Span = timedelta(minutes=5)
    """Longest wait between attempts."""
    multiplier: float = Field(default=2.0, ge=1.0)
    """Growth of the wait per failed attempt."""
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)
    """Fraction of the delay drawn at random, so failed jobs do not retry in lockstep."""


class _ProviderBase(_Section):
    retry: RetrySettings = RetrySettings()
    """Backoff between attempts (``[provider.retry]``)."""
    dedup_window: Span = timedelta(0)
    """How long a deduplication key stays taken after its job finished."""


class MemoryProviderSettings(_ProviderBase):
    """``type = "memory"``: in-process queues; jobs do not survive a restart."""

    type: Literal["memory"] = "memory"
    max_history: int = Field(default=10_000, ge=0)
    """Finished jobs kept for ``GetJob``/``ListJobs``; the oldest are forgotten first."""


_SQS_MAX_VISIBILITY = timedelta(hours=12)


class SqsProviderSettings(_ProviderBase):
    """``type = "sqs"``: AWS SQS queues through aiobotocore (the gateway's ``sqs`` extra).

    Credentials come from the standard AWS chain (environment variables, the
    shared config and credentials files, instance or task roles); this table
    holds none. Job records (state, attempts, results) live in ``database_url``;
    give every gateway on the same queues the same PostgreSQL database.
    """

    type: Literal["sqs"] = "sqs"
    region: str | None = None
    """AWS region, e.g. ``eu-west-1``; None: from the AWS chain (``AWS_REGION``, profile)."""
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
    database_url: str | None = None
    """Database of the job records; None: the scheduler's ``database_url``."""
    history_retention: Span = Field(default=timedelta(days=1), gt=timedelta(0))
    """How long finished jobs stay in the records for ``GetJob`` and ``ListJobs``."""
    sync_interval: Span = Field(default=timedelta(seconds=1), gt=timedelta(0))
    """How often the gateway looks for changes other gateways made to jobs it
    leases (cancellation) or that clients watch; bounds how late those are seen."""

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

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        return value if value is None else _check_database_url(value)


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
    | Annotated[PostgresProviderSettings, Tag("postgres")]
    | Annotated[SqliteProviderSettings, Tag("sqlite")],
    Discriminator(_provider_type),
]


class WorkerSettings(_Section):
    """The ``[worker]`` table: whether the gateway runs handlers itself."""

    mode: Literal["standalone", "in-process"] = "standalone"
    """``in-process`` runs a worker inside the gateway with ``handlers``."""
    handlers: list[str] = []
    """``module:attribute`` paths of handler registries for the in-process worker."""
    queues: list[str] = ["default"]
    """Queues the in-process worker takes jobs from."""
    concurrency: int = Field(default=8, gt=0)
    """Handlers the in-process worker runs at once."""
    shutdown_timeout: Span = timedelta(seconds=30)
    """How long the in-process worker waits for running handlers at shutdown."""

    @model_validator(mode="after")
    def _check_handlers(self) -> WorkerSettings:
        if self.mode == "in-process" and not self.handlers:
            raise ValueError(
                'mode "in-process" needs handlers, e.g. handlers = ["myapp.jobs:registry"]'
            )
        return self


_DATABASE_URL = re.compile(r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://")


class SchedulerSettings(_Section):
    """The ``[scheduler]`` table (database-backed one-time and recurring jobs)."""

    enabled: bool = True
    """Serve ScheduleService and hold long delays; when false ScheduleService
    answers FAILED_PRECONDITION and the provider must hold every delay itself."""
    database_url: str = "sqlite+aiosqlite:///jobwire.db"
    """``sqlite+aiosqlite:///PATH`` (one gateway) or ``postgresql+asyncpg://…``
    (any number of gateways; needs the ``postgres`` extra)."""
    poll_interval: Span = Field(default=timedelta(seconds=60), gt=timedelta(0))
    """Longest sleep between looks at the database. Changes made through this
    gateway wake it at once; this bounds how late another gateway's changes are seen."""
    delay_threshold: Span | None = None
    """Jobs due further ahead than this are held by the scheduler, so they survive
    a restart. None: the provider's native limit, or 15 minutes if it has none."""
    misfire_grace: Span = Field(default=timedelta(seconds=60), ge=timedelta(0))
    """An occurrence found later than this counts as missed and follows the
    schedule's misfire policy (skip, or run once)."""
    batch_size: int = Field(default=500, gt=0, le=1000)
    """Most due one-time jobs (and, separately, schedules) claimed per database transaction."""
    claim_timeout: Span = Field(default=timedelta(seconds=60), gt=timedelta(0))
    """How long a gateway may take to hand claimed jobs to the provider; after it,
    another gateway (or this one after a restart) hands them over instead."""
    history_retention: Span = Field(default=timedelta(days=1), gt=timedelta(0))
    """How long handed-over and cancelled one-time jobs and fired occurrences are kept."""

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        return _check_database_url(value)


def _check_database_url(value: str) -> str:
    if not _DATABASE_URL.match(value):
        raise ValueError(
            "expected sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB, "
            f"got {value.split('://')[0]!r}://…"
        )
    return value


class GatewaySettings(BaseSettings):
    """All gateway settings.

    Sources, highest priority first: keyword arguments, ``JOBWIRE_<TABLE>__<KEY>``
    environment variables, then the TOML file given to :func:`load_settings`.
    """

    model_config = SettingsConfigDict(
        env_prefix="JOBWIRE_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        # Errors name the key and the rule, never the value: it may be a token
        # pasted by mistake or a database URL with its password.
        hide_input_in_errors=True,
    )

    server: ServerSettings = ServerSettings()
    provider: ProviderSettings = MemoryProviderSettings()
    worker: WorkerSettings = WorkerSettings()
    scheduler: SchedulerSettings = SchedulerSettings()

    @model_validator(mode="after")
    def _in_process_worker_without_tls(self) -> Self:
        # The in-process worker dials the gateway's own address with no
        # certificate of its own, so it cannot pass (mutual) TLS.
        if self.worker.mode == "in-process" and self.server.tls is not None:
            raise ValueError(
                'worker.mode = "in-process" cannot be combined with [server.tls]; '
                "run standalone workers (jobwire-worker --tls-ca ...) instead"
            )
        return self

    @model_validator(mode="after")
    def _sqs_records_next_to_the_scheduler(self) -> Self:
        # The SQS provider's job records default to the scheduler's database,
        # so a deployment configures one database for both.
        provider = self.provider
        if isinstance(provider, SqsProviderSettings) and provider.database_url is None:
            update = {"database_url": self.scheduler.database_url}
            object.__setattr__(self, "provider", provider.model_copy(update=update))
        return self

    @model_validator(mode="after")
    def _postgres_queue_next_to_the_scheduler(self) -> Self:
        # The postgres provider defaults to the scheduler's database when that
        # is PostgreSQL: one database for both.
        provider = self.provider
        if isinstance(provider, PostgresProviderSettings) and provider.database_url is None:
            url = self.scheduler.database_url
            if not url.startswith("postgresql+asyncpg://"):
                raise ValueError(
                    'provider.database_url is required for type = "postgres" when the '
                    "scheduler's database is not PostgreSQL, e.g. "
                    'database_url = "postgresql+asyncpg://USER@HOST/DB"'
                )
            update = {"database_url": url}
            object.__setattr__(self, "provider", provider.model_copy(update=update))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read keyword arguments, then the environment, then the TOML file."""
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_CONFIG_FILE.get())
        return init_settings, env_settings, toml


def load_settings(config_file: str | Path | None = None, **overrides: object) -> GatewaySettings:
    """Load settings from ``config_file`` (TOML), the environment and ``overrides``.

    Raises:
        FileNotFoundError: ``config_file`` does not exist.
        pydantic.ValidationError: a value is invalid; the message names the key.
    """
    path = Path(config_file) if config_file is not None else None
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    token = _CONFIG_FILE.set(path)
    try:
        return GatewaySettings(**overrides)  # type: ignore[arg-type]  # validated by pydantic
    finally:
        _CONFIG_FILE.reset(token)
