"""The providers the contract suite runs on, and how a test gets its backend.

Adding a provider to the contract suite is one entry in :data:`BACKENDS`: a
function that, given the test's request (to ask for fixtures such as a fresh
SQS queue set or an emptied database) and the test's ``provider`` overrides,
returns the ``[provider]`` table of the gateway under test. Every module
marked ``pytestmark = CONTRACT`` then runs on it, and the fault scenarios
parametrized over providers can start gateway processes on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

ProviderSettings = Callable[[pytest.FixtureRequest, dict[str, Any]], dict[str, Any]]


def _memory(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    return {"type": "memory", **overrides}


def _sqs(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    from sqs_support import SqsQueues

    queues: SqsQueues = request.getfixturevalue("sqs_queues")
    return queues.provider_settings(**overrides)


def _redis(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    url: str = request.getfixturevalue("redis_url")
    return {"type": "redis", "url": url, **overrides}


def _rabbitmq(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    from rabbitmq_support import RabbitVhost

    vhost: RabbitVhost = request.getfixturevalue("rabbitmq_vhost")
    settings = {
        "type": "rabbitmq",
        "url": vhost.url,
        "queue_prefix": vhost.prefix_of(request.node.nodeid),
    }
    return {**settings, **overrides}


def _postgres(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    url: str = request.getfixturevalue("queue_database_url")
    return {"type": "postgres", "database_url": url, **overrides}


def _sqlite(request: pytest.FixtureRequest, overrides: dict[str, Any]) -> dict[str, Any]:
    path = request.getfixturevalue("tmp_path") / "queue.db"
    return {"type": "sqlite", "database_url": f"sqlite+aiosqlite:///{path}", **overrides}


BACKENDS: dict[str, ProviderSettings] = {
    "memory": _memory,
    "sqs": _sqs,
    "redis": _redis,
    "rabbitmq": _rabbitmq,
    "postgres": _postgres,
    "sqlite": _sqlite,
}
"""Provider name -> the ``[provider]`` table of a gateway under test."""

PROVIDERS = list(BACKENDS)
"""Every provider of the contract suite."""

CONTRACT = pytest.mark.contract
"""Run a module's tests on every provider: ``pytestmark = CONTRACT`` (see ``conftest.py``)."""


def provider_settings(
    kind: str, request: pytest.FixtureRequest, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The ``[provider]`` table for a test on provider ``kind``."""
    return BACKENDS[kind](request, dict(overrides or {}))
