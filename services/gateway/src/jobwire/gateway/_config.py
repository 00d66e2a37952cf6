"""Gateway configuration: pydantic models read from TOML and ``JOBWIRE_*`` variables."""

from __future__ import annotations

import ipaddress
import re
from contextvars import ContextVar
from datetime import timedelta
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from jobwire.gateway._config_types import MiB, Section, Span, check_database_url
from jobwire.gateway._provider_config import (
    MemoryProviderSettings,
    PostgresProviderSettings,
    ProviderSettings,
    RecordsProviderSettings,
)
from jobwire.gateway._queue_settings import QueueSettings, check_queue_names

_CONFIG_FILE: ContextVar[Path | None] = ContextVar("jobwire_config_file", default=None)

Role = Literal["producer", "worker", "admin"]
"""What a token may call: producer (QueueService, ScheduleService), worker
(WorkerService) or admin (everything)."""

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


class TokenSettings(Section):
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


class AuthSettings(Section):
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


class TLSSettings(Section):
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


class ServerSettings(Section):
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
    """Most long-lived streams (worker, ``WatchJob(s)`` and ``EnqueueStream``) open at once."""
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
        return _check_address(value)


def _check_address(value: str | None) -> str | None:
    if value is None:
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return value


def _is_loopback(host: str) -> bool:
    host = host.removeprefix("[").removesuffix("]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DashboardSettings(Section):
    """The ``[dashboard]`` table: the web dashboard served by the gateway process.

    Needs the ``dashboard`` extra (``pip install 'jobwire-gateway[dashboard]'``).
    """

    listen: str | None = None
    """``HOST:PORT`` of the dashboard (port 0: a free port); None: off."""
    read_only: bool = False
    """Hide every action of the dashboard and refuse every change."""
    password: SecretStr | None = None
    """Login password, required when ``listen`` is beyond loopback."""

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        return _check_address(value)

    @model_validator(mode="after")
    def _login_beyond_loopback(self) -> DashboardSettings:
        if self.listen is not None and self.password is None:
            host = self.listen.rpartition(":")[0]
            if not _is_loopback(host):
                raise ValueError(
                    f"listen {self.listen!r} is beyond loopback, so the dashboard needs "
                    "a login: set password (or JOBWIRE_DASHBOARD__PASSWORD)"
                )
        return self


class WorkerSettings(Section):
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


class SchedulerSettings(Section):
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
        return check_database_url(value)


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
    dashboard: DashboardSettings = DashboardSettings()
    queues: dict[str, QueueSettings] = {}
    """Flow control per queue (``[queues.NAME]``), applied at start."""

    @field_validator("queues")
    @classmethod
    def _check_queue_names(cls, value: dict[str, QueueSettings]) -> dict[str, QueueSettings]:
        return check_queue_names(value)

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
    def _dashboard_without_tls(self) -> Self:
        # Like the in-process worker, the dashboard dials the gateway's own
        # address and has no certificate to pass (mutual) TLS with.
        if self.dashboard.listen is not None and self.server.tls is not None:
            raise ValueError(
                "[dashboard] listen cannot be combined with [server.tls]; "
                "run jobwire-dashboard next to the gateway instead"
            )
        return self

    @model_validator(mode="after")
    def _broker_records_next_to_the_scheduler(self) -> Self:
        # The broker providers' job records default to the scheduler's
        # database, so a deployment configures one database for both.
        provider = self.provider
        if isinstance(provider, RecordsProviderSettings) and provider.database_url is None:
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
