"""Queue providers: the storage hooks, the lease state machine above them, the registry.

A provider whose SDK is an optional extra is imported only when configured.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
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


def _sqs(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    try:
        from jobwire.gateway.providers.sqs import SqsProvider
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in _SQS_SDK:
            raise
        raise StartError(
            f'"sqs" needs the gateway\'s sqs extra ({error.name} is missing); '
            + install_hint("'./services/gateway[sqs]'")
            + " (or use the hatch env that has it: python3 -m hatch -e test shell)",
            key="provider.type",
        ) from None

    assert isinstance(settings, SqsProviderSettings)
    return SqsProvider(settings, events)


_SQS_SDK = frozenset({"aiobotocore", "botocore", "aiohttp"})


def _redis(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    try:
        from jobwire.gateway.providers.redis import RedisProvider
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in _REDIS_SDK:
            raise
        raise StartError(
            f'"redis" needs the gateway\'s redis extra ({error.name} is missing); '
            + install_hint("'./services/gateway[redis]'")
            + " (or use the hatch env that has it: python3 -m hatch -e test shell)",
            key="provider.type",
        ) from None

    assert isinstance(settings, RedisProviderSettings)
    return RedisProvider(settings, events)


_REDIS_SDK = frozenset({"redis", "hiredis"})


def _rabbitmq(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    try:
        from jobwire.gateway.providers.rabbitmq import RabbitMqProvider
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in _RABBITMQ_SDK:
            raise
        raise StartError(
            f'"rabbitmq" needs the gateway\'s rabbitmq extra ({error.name} is missing); '
            + install_hint("'./services/gateway[rabbitmq]'")
            + " (or use the hatch env that has it: python3 -m hatch -e test shell)",
            key="provider.type",
        ) from None

    assert isinstance(settings, RabbitMqProviderSettings)
    return RabbitMqProvider(settings, events)


_RABBITMQ_SDK = frozenset({"aio_pika", "aiormq", "pamqp"})


def _postgres(settings: Any, events: JobEvents) -> QueueProvider[Any]:
    try:  # the driver SQLAlchemy loads for postgresql+asyncpg URLs
        importlib.import_module("asyncpg")
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] != "asyncpg":
            raise
        raise StartError(
            '"postgres" needs the gateway\'s postgres extra (asyncpg is missing); '
            + install_hint("'./services/gateway[postgres]'")
            + " (or use the hatch env that has it: python3 -m hatch -e test shell)",
            key="provider.type",
        ) from None
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
