"""Queue providers and the registry from the config's ``type`` to a factory.

A provider whose SDK is an optional extra is imported only when configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobwire.gateway._config import MemoryProviderSettings
from jobwire.gateway.providers.base import JobEvents, QueueProvider


def _memory(settings: Any, events: JobEvents) -> QueueProvider:
    from jobwire.gateway.providers.memory import MemoryProvider

    assert isinstance(settings, MemoryProviderSettings)
    return MemoryProvider(settings, events)


ProviderFactory = Callable[[Any, JobEvents], QueueProvider]

PROVIDERS: dict[str, ProviderFactory] = {
    "memory": _memory,
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
