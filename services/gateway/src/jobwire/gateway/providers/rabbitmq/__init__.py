"""RabbitMQ provider (``type = "rabbitmq"``): jobs in quorum queues, records in a database."""

from __future__ import annotations

from jobwire.gateway.providers.rabbitmq._errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    QueueMissingError,
)
from jobwire.gateway.providers.rabbitmq._provider import TABLES, RabbitMqProvider

__all__ = [
    "TABLES",
    "BrokerRefusedError",
    "BrokerUnavailableError",
    "QueueMissingError",
    "RabbitMqProvider",
]
