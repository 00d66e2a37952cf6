"""The jobwire gateway: gRPC front of the queue providers and the scheduler.

Run it with the ``jobwire-gateway`` command, or embed it::

    async with Gateway(load_settings("jobwire.toml")) as gateway:
        ...

    with EmbeddedGateway() as gateway:  # background thread, free port
        print(gateway.address)

    gateway = embedded()  # the same, started, for a notebook cell; gateway.stop() ends it
"""

from __future__ import annotations

import logging

from jobwire.gateway.__about__ import __version__
from jobwire.gateway._config import (
    GatewaySettings,
    SchedulerSettings,
    ServerSettings,
    WorkerSettings,
    load_settings,
)
from jobwire.gateway._embedded import EmbeddedGateway, embedded
from jobwire.gateway._errors import StartError
from jobwire.gateway._provider_config import (
    MemoryProviderSettings,
    PostgresProviderSettings,
    RabbitMqProviderSettings,
    RedisProviderSettings,
    RetrySettings,
    SqliteProviderSettings,
    SqsProviderSettings,
)
from jobwire.gateway._server import Gateway

__all__ = [
    "EmbeddedGateway",
    "Gateway",
    "GatewaySettings",
    "MemoryProviderSettings",
    "PostgresProviderSettings",
    "RabbitMqProviderSettings",
    "RedisProviderSettings",
    "RetrySettings",
    "SchedulerSettings",
    "ServerSettings",
    "SqliteProviderSettings",
    "SqsProviderSettings",
    "StartError",
    "WorkerSettings",
    "__version__",
    "embedded",
    "load_settings",
]

for _name in __all__:
    _obj = globals()[_name]
    if hasattr(_obj, "__module__"):
        _obj.__module__ = __name__

# A library logs; the application decides where to (the logging HOWTO's advice),
# so nothing reaches stderr unless logging is configured.
logging.getLogger(__name__).addHandler(logging.NullHandler())
