"""The fault suite: gateways and workers as processes, faults injected, nothing lost.

Each scenario appends an :class:`fleet.Outcome`; the terminal summary prints
them as one table (scenario, jobs, lost, duplicates, max redelivery delay).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jobwire.client import AsyncClient

from backends import provider_settings
from fleet import OUTCOME, Fleet, GatewayProcess, Outcome, StartGateway
from timing import PerProvider


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Processes for one scenario; all of them are stopped when it ends."""
    processes = Fleet(tmp_path)
    try:
        yield processes
    finally:
        processes.close()


@pytest.fixture
def provider_kind() -> str:
    """The provider of ``start_gateway``'s gateways; ``fleet.PROVIDERS`` parametrizes it."""
    return "memory"


PROVIDER_DEFAULTS: PerProvider[dict[str, Any]] = PerProvider.of_each(
    {"max_history": 100_000},
    # SQS: short visibility and polls, so that a dead gateway's jobs come back soon.
    sqs={"visibility_timeout": 2, "wait_time": 1},
    # Redis: a dead gateway's leases are taken back 2 s after its last heartbeat.
    redis={"max_history": 100_000, "gateway_timeout": 2},
    # RabbitMQ: a dead gateway's channels close with its connection; the broker
    # requeues their messages at once.
    rabbitmq={},
    # SQL: a gateway that died has its leases released 2 s after its last heartbeat.
    postgres={"max_history": 100_000, "heartbeat_interval": 0.5, "heartbeat_timeout": 2},
    sqlite={"max_history": 100_000},
)
"""Provider settings of the fault scenarios' gateways, by provider."""


@pytest.fixture
def start_gateway(fleet: Fleet, provider_kind: str, request: pytest.FixtureRequest) -> StartGateway:
    """Start gateway processes of ``provider_kind``, settings merged into the defaults.

    Leases may be as short as 1 s; the provider's table is the test's backend
    (``backends.BACKENDS``) with :data:`PROVIDER_DEFAULTS`.
    """

    def start(port: int | None = None, **sections: dict[str, Any]) -> GatewayProcess:
        provider = provider_settings(provider_kind, request, PROVIDER_DEFAULTS.of(provider_kind))
        settings: dict[str, dict[str, Any]] = {
            "server": {"min_lease_duration": 1},
            "provider": provider,
        }
        for table, values in sections.items():
            settings[table] = {**settings.get(table, {}), **values}
        return fleet.gateway(port, **settings)

    return start


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[Outcome], None]:
    """Add a scenario's figures to the suite's summary table.

    They travel as a user property of the test's report, so that the table
    also gathers the scenarios that ran in other xdist worker processes.
    """

    def add(outcome: Outcome) -> None:
        request.node.user_properties.append((OUTCOME, outcome.row()))

    return add


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[str], AsyncClient]]:
    """Open clients to gateway processes; all are closed after the test."""
    clients: list[AsyncClient] = []

    def open_client(address: str) -> AsyncClient:
        clients.append(AsyncClient(address))
        return clients[-1]

    yield open_client
    for client in clients:
        await client.aclose()
