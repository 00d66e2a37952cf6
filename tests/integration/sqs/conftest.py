"""SQS provider tests: gateways on the session's moto server, and a PostgreSQL database.

PostgreSQL is the machine's server (see ``integration/scheduler/helpers.py``);
the session creates a database with a unique name for the gateways that share
job records, and drops it at the end. Each test that uses it starts empty.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest
from integration.scheduler.helpers import ADMIN_URL, psql
from sqlalchemy.engine import make_url

from jobwire.gateway import Gateway

from conftest import GatewayFactory
from sqs_support import SqsQueues
from support import Producer, RawWorker

TABLES = ", ".join(
    f"'{table}'"
    for table in (
        "jobwire_sqs_jobs",
        "jobwire_sqs_dedup_keys",
        "schedules",
        "schedule_fires",
        "scheduled_jobs",
    )
)


@pytest.fixture(scope="session")
def sqs_postgres_database() -> Iterator[str]:
    """Name of a database created for this session's SQS tests, dropped at its end."""
    try:
        psql("SELECT 1")
    except (OSError, RuntimeError) as error:
        message = f"PostgreSQL not reachable at {ADMIN_URL} ({error}); see scripts/services.py"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    name = f"jobwire_sqs_test_{os.getpid()}_{secrets.token_hex(4)}"
    psql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        # FORCE: a gateway process a failed test left behind must not keep it alive.
        psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(sqs_postgres_database: str) -> str:
    """SQLAlchemy URL of the session's database, its tables emptied."""
    psql(
        "DO $$ DECLARE t text; BEGIN "
        f"FOREACH t IN ARRAY ARRAY[{TABLES}] LOOP "
        "IF to_regclass(t) IS NOT NULL THEN EXECUTE 'TRUNCATE ' || t || ' CASCADE'; END IF; "
        "END LOOP; END $$",
        sqs_postgres_database,
    )
    url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=sqs_postgres_database)
    return url.render_as_string(hide_password=False)


SqsGateway = Callable[..., Awaitable[Gateway]]


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
