"""Queue providers: the storage hooks, the lease state machine above them, the registry.

A provider whose SDK is an optional extra is imported only when configured.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from jobwire.gateway._errors import StartError, install_hint
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobFilter
from jobwire.gateway._provider_config import (
    MemoryProviderSettings,
    PostgresProviderSettings,
    RabbitMqProviderSettings,
    RedisProviderSettings,
    SqliteProviderSettings,
    SqsProviderSettings,
)
from jobwire.gateway.providers._leases import Leases
from jobwire.gateway.providers._retry import RetryPolicy, exhausted
from jobwire.gateway.providers._types import (
    AckRequest,
    Claim,
    Consumer,
    Delivery,
    Ending,
    Lease,
    LeaseOutcome,
    NackRequest,
    Purged,
    QueueCounts,
    Revocation,
    RevokeReason,
    WorkerInfo,
)
from jobwire.gateway.providers.base import ProviderHost, QueueProvider, WorkerBoard


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a provider type's class lives, its settings, and its optional extra."""

    module: str
    cls: str
    settings: type[Any]
    extra: str = ""
    """The gateway's extra with the backend's SDK ("": none needed)."""
    sdk: frozenset[str] = frozenset()
    """The SDK's top-level modules: one of them missing means the extra is."""
    probe: str = ""
    """A module to import first to find a missing SDK (default: ``module``)."""

    def create(self, settings: Any, events: JobEvents) -> QueueProvider[Any]:
        """Import the provider (saying which extra to install if its SDK is missing)."""
        if self.extra:
            _import_extra(self.extra, self.sdk, self.probe or self.module)
        assert isinstance(settings, self.settings)
        provider: QueueProvider[Any] = getattr(importlib.import_module(self.module), self.cls)(
            settings, events
        )
        return provider


def _import_extra(extra: str, sdk: frozenset[str], module: str) -> ModuleType:
    """Import ``module``; a missing SDK module of ``extra`` says what to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in sdk:
            raise
        raise StartError(
            f'"{extra}" needs the gateway\'s {extra} extra ({error.name} is missing); '
            + install_hint(f"'./services/gateway[{extra}]'")
            + " (or use the hatch env that has it: python3 -m hatch -e test shell)",
            key="provider.type",
        ) from None


_HERE = __name__
PROVIDERS: dict[str, Backend] = {
    "memory": Backend(f"{_HERE}.memory", "MemoryProvider", MemoryProviderSettings),
    "sqs": Backend(
        f"{_HERE}.sqs",
        "SqsProvider",
        SqsProviderSettings,
        "sqs",
        frozenset({"aiobotocore", "botocore", "aiohttp"}),
    ),
    "redis": Backend(
        f"{_HERE}.redis",
        "RedisProvider",
        RedisProviderSettings,
        "redis",
        frozenset({"redis", "hiredis"}),
    ),
    "rabbitmq": Backend(
        f"{_HERE}.rabbitmq",
        "RabbitMqProvider",
        RabbitMqProviderSettings,
        "rabbitmq",
        frozenset({"aio_pika", "aiormq", "pamqp"}),
    ),
    # asyncpg is the driver SQLAlchemy loads for postgresql+asyncpg URLs.
    "postgres": Backend(
        f"{_HERE}.sql",
        "SqlProvider",
        PostgresProviderSettings,
        "postgres",
        frozenset({"asyncpg"}),
        probe="asyncpg",
    ),
    "sqlite": Backend(f"{_HERE}.sql", "SqlProvider", SqliteProviderSettings),
}
"""Every provider type, by its ``[provider] type``."""


def create_provider(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    """Build the provider named by ``settings.type``."""
    try:
        backend = PROVIDERS[settings.type]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider type {settings.type!r} (known: {known})") from None
    return backend.create(settings, events)


__all__ = [
    "PROVIDERS",
    "AckRequest",
    "Backend",
    "Claim",
    "Consumer",
    "Delivery",
    "Ending",
    "JobFilter",
    "JobSelector",
    "Lease",
    "LeaseOutcome",
    "Leases",
    "NackRequest",
    "ProviderHost",
    "Purged",
    "QueueCounts",
    "QueueProvider",
    "RetryPolicy",
    "Revocation",
    "RevokeReason",
    "WorkerBoard",
    "WorkerInfo",
    "create_provider",
    "exhausted",
]
