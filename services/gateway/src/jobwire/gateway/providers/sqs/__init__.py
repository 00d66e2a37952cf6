"""AWS SQS provider (``type = "sqs"``): jobs in SQS queues, records in the gateway's database."""

from __future__ import annotations

from jobwire.gateway.providers.sqs._errors import (
    QueueNotConfiguredError,
    SqsRefusedError,
    SqsUnavailableError,
)
from jobwire.gateway.providers.sqs._provider import TABLES, SqsProvider

__all__ = [
    "TABLES",
    "QueueNotConfiguredError",
    "SqsProvider",
    "SqsRefusedError",
    "SqsUnavailableError",
]
