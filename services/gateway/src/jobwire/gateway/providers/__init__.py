"""Queue providers: the storage hooks, the lease state machine above them, the registry.

A provider whose SDK is an optional extra is imported only when configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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


def _memory(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    from jobwire.gateway.providers.memory import MemoryProvider

    assert isinstance(settings, MemoryProviderSettings)
    return MemoryProvider(settings, events)


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


def _sqs(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    sdk = frozenset({"aiobotocore", "botocore", "aiohttp"})
    module = _import_extra("sqs", sdk, "jobwire.gateway.providers.sqs")
    assert isinstance(settings, SqsProviderSettings)
    provider: QueueProvider[Any] = module.SqsProvider(settings, events)
    return provider


def _redis(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    module = _import_extra(
        "redis", frozenset({"redis", "hiredis"}), "jobwire.gateway.providers.redis"
    )
    assert isinstance(settings, RedisProviderSettings)
    provider: QueueProvider[Any] = module.RedisProvider(settings, events)
    return provider


def _rabbitmq(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    sdk = frozenset({"aio_pika", "aiormq", "pamqp"})
    module = _import_extra("rabbitmq", sdk, "jobwire.gateway.providers.rabbitmq")
    assert isinstance(settings, RabbitMqProviderSettings)
    provider: QueueProvider[Any] = module.RabbitMqProvider(settings, events)
    return provider


def _postgres(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    # asyncpg is the driver SQLAlchemy loads for postgresql+asyncpg URLs.
    _import_extra("postgres", frozenset({"asyncpg"}), "asyncpg")
    from jobwire.gateway.providers.sql import SqlProvider

    assert isinstance(settings, PostgresProviderSettings)
    return SqlProvider(settings, events)


def _sqlite(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    from jobwire.gateway.providers.sql import SqlProvider

    assert isinstance(settings, SqliteProviderSettings)
    return SqlProvider(settings, events)


ProviderFactory = Callable[[Any, JobEvents], QueueProvider[Any]]

PROVIDERS: dict[str, ProviderFactory] = {
    "memory": _memory,
    "sqs": _sqs,
    "redis": _redis,
    "rabbitmq": _rabbitmq,
    "postgres": _postgres,
    "sqlite": _sqlite,
}


def create_provider(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    """Build the provider named by ``settings.type``."""
    try:
        factory = PROVIDERS[settings.type]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider type {settings.type!r} (known: {known})") from None
    return factory(settings, events)


__all__ = [
    "PROVIDERS",
    "AckRequest",
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
