"""Queue providers and the registry from the config's ``type`` to a factory.

A provider whose SDK is an optional extra is imported only when configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobwire.gateway._config import MemoryProviderSettings, SqsProviderSettings
from jobwire.gateway.providers.base import JobEvents, QueueProvider


def _memory(settings: Any, events: JobEvents) -> QueueProvider:
    from jobwire.gateway.providers.memory import MemoryProvider

    assert isinstance(settings, MemoryProviderSettings)
    return MemoryProvider(settings, events)


def _sqs(settings: Any, events: JobEvents) -> QueueProvider:
    try:
        from jobwire.gateway.providers.sqs import SqsProvider
    except ModuleNotFoundError as error:
        if (error.name or "").partition(".")[0] not in _SQS_SDK:
            raise
        raise RuntimeError(
            f'provider.type = "sqs" needs the gateway\'s sqs extra ({error.name} is missing); '
            "install it with: pip install 'jobwire-gateway[sqs]'"
        ) from None

    assert isinstance(settings, SqsProviderSettings)
    return SqsProvider(settings, events)


_SQS_SDK = frozenset({"aiobotocore", "botocore", "aiohttp"})

ProviderFactory = Callable[[Any, JobEvents], QueueProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    "memory": _memory,
    "sqs": _sqs,
}


def create_provider(settings: Any, events: JobEvents) -> QueueProvider:
    """Build the provider named by ``settings.type``."""
    try:
        factory = PROVIDERS[settings.type]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider type {settings.type!r} (known: {known})") from None
    return factory(settings, events)


__all__ = ["PROVIDERS", "QueueProvider", "create_provider"]
