"""SQS provider tests: gateways on the session's moto server, and a PostgreSQL database.

PostgreSQL is the machine's server (see ``tests/postgres.py``);
the session creates a database with a unique name for the gateways that share
job records, and drops it at the end. Each test that uses it starts empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest

from jobwire.gateway import Gateway

from conftest import GatewayFactory
from postgres import emptied_url, temporary_database
from sqs_support import SqsQueues
from support import Producer, RawWorker

TABLES = (
    "jobwire_sqs_jobs",
    "jobwire_sqs_dedup_keys",
    "jobwire_sqs_paused_queues",
    "jobwire_sqs_replay_requests",
    "jobwire_sqs_purged_jobs",
    "jobwire_sqs_workers",
    "schedules",
    "schedule_fires",
    "scheduled_jobs",
)
SqsGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture(scope="session")
def sqs_postgres_database() -> Iterator[str]:
    """Name of a database created for this session's SQS tests, dropped at its end."""
    with temporary_database("jobwire_sqs_test") as name:
        yield name


@pytest.fixture
def postgres_url(sqs_postgres_database: str) -> str:
    """SQLAlchemy URL of the session's database, its tables emptied."""
    return emptied_url(sqs_postgres_database, TABLES)


@pytest.fixture
def sqs_gateway(gateway_factory: GatewayFactory, sqs_queues: SqsQueues) -> SqsGateway:
    """Start SQS gateways on this test's queues: ``await sqs_gateway(server={...}, **provider)``."""

    async def start(
        *,
        server: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        **provider: Any,
    ) -> Gateway:
        return await gateway_factory(
            server=server or {},
            scheduler=scheduler or {},
            provider=sqs_queues.provider_settings(**provider),
        )

    return start


class Client:
    """A producer and raw workers on one gateway."""

    def __init__(self, channel: grpc.aio.Channel, stack: AsyncExitStack) -> None:
        self.channel = channel
        self.producer = Producer(channel)
        self._workers: list[RawWorker] = []
        stack.callback(self._drop_workers)

    async def worker(self, **open_fields: Any) -> RawWorker:
        worker = await RawWorker(self.channel, **open_fields).open()
        self._workers.append(worker)
        return worker

    def _drop_workers(self) -> None:
        for worker in self._workers:
            worker.drop()


ClientFactory = Callable[[Gateway], Awaitable[Client]]


@pytest.fixture
async def connect() -> AsyncIterator[ClientFactory]:
    """Open clients of gateways; channels and workers are closed after the test."""
    async with AsyncExitStack() as stack:

        async def open_client(gateway: Gateway) -> Client:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(gateway.address))
            return Client(channel, stack)

        yield open_client
