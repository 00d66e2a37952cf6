"""Shared fixtures: real gateways on 127.0.0.1 with free ports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest

from jobwire.gateway import EmbeddedGateway, Gateway
from jobwire.gateway.testing import running_gateway, settings_for_tests

from backends import PROVIDERS, provider_settings
from fleet import OUTCOME, Outcome
from postgres import emptied_url, temporary_database
from rabbitmq_support import RabbitVhost
from redis_support import RedisServer
from sqs_support import AWS_ENVIRONMENT, MotoServer, SqsQueues, create_queues
from support import Producer, RawWorker
from timing import resolve

GatewayFactory = Callable[..., Awaitable[Gateway]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each contract test once per provider, or on those ``providers(...)`` names."""
    if metafunc.definition.get_closest_marker("contract") is None:
        return
    if "provider_kind" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("providers")
    metafunc.parametrize("provider_kind", list(only.args) if only else PROVIDERS)


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """Start gateways with config overrides, e.g. ``await gateway_factory(server={...})``.

    Every gateway started is stopped when the test ends.
    """
    async with AsyncExitStack() as stack:

        async def start(**sections: Any) -> Gateway:
            return await stack.enter_async_context(running_gateway(**sections))

        yield start


@pytest.fixture
def provider_kind() -> str:
    """The provider of the ``gateway`` fixture; ``backends.CONTRACT`` parametrizes it."""
    return "memory"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """One moto server (SQS over real HTTP) for the session, with test credentials set."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENVIRONMENT.items():
            patch.setenv(name, value)
        server = MotoServer()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def sqs_queues(moto_server: MotoServer) -> SqsQueues:
    """Fresh SQS queues for one test (moto reset first).

    A plain fixture, so that ``gateway`` can ask for it only when it needs SQS.
    """
    moto_server.reset()
    with ThreadPoolExecutor(1) as thread:
        return thread.submit(asyncio.run, create_queues(moto_server.url)).result()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One ``redis-server`` for the session (one per xdist worker), stopped at its end."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url


@pytest.fixture(scope="session")
def rabbitmq_vhost() -> Iterator[RabbitVhost]:
    """A vhost on the machine's RabbitMQ for the session (one per xdist worker), then deleted.

    Tests keep apart by a queue prefix each (``RabbitVhost.fresh_prefix``).
    """
    vhost = RabbitVhost()
    try:
        yield vhost
    finally:
        vhost.delete()


QUEUE_TABLES = (
    "jobwire_jobs",
    "jobwire_gateways",
    "jobwire_paused_queues",
    "jobwire_replay_requests",
    "jobwire_workers",
    "jobwire_queue_flow",
)
"""The postgres provider's tables (default prefix), emptied between tests."""


@pytest.fixture(scope="session")
def queue_database() -> Iterator[str]:
    """A PostgreSQL database for the postgres provider, one per test session (process)."""
    with temporary_database("jobwire_queue") as name:
        yield name


@pytest.fixture
def queue_database_url(queue_database: str) -> str:
    """The asyncpg URL of ``queue_database``, its queue tables emptied."""
    return emptied_url(queue_database, QUEUE_TABLES)


@pytest.fixture
async def gateway(
    gateway_factory: GatewayFactory, request: pytest.FixtureRequest, provider_kind: str
) -> Gateway:
    """A fresh gateway on the provider ``provider_kind`` names (``backends.BACKENDS``).

    ``@pytest.mark.gateway(server={...}, provider={...})`` overrides settings;
    a ``PerProvider`` value in them picks a value per provider.
    """
    marker = request.node.get_closest_marker("gateway")
    sections = resolve(dict(marker.kwargs) if marker else {}, provider_kind)
    sections["provider"] = provider_settings(provider_kind, request, sections.get("provider"))
    return await gateway_factory(**sections)


@pytest.fixture
def embedded_gateway() -> Iterator[EmbeddedGateway]:
    """A gateway on its own thread and loop, for sync code and sync tests."""
    with EmbeddedGateway(settings_for_tests()) as embedded:
        yield embedded


@pytest.fixture
async def channel(gateway: Gateway) -> AsyncIterator[grpc.aio.Channel]:
    """An async channel to ``gateway``."""
    async with grpc.aio.insecure_channel(gateway.address) as chan:
        yield chan


@pytest.fixture
def producer(channel: grpc.aio.Channel) -> Producer:
    """QueueService helper on ``channel``."""
    return Producer(channel)


@pytest.fixture
async def raw_worker(
    channel: grpc.aio.Channel,
) -> AsyncIterator[Callable[..., Awaitable[RawWorker]]]:
    """Open raw worker streams on ``channel``; all are dropped after the test."""
    opened: list[RawWorker] = []

    async def open_stream(**open_fields: Any) -> RawWorker:
        worker = await RawWorker(channel, **open_fields).open()
        opened.append(worker)
        return worker

    yield open_stream
    for worker in opened:
        worker.drop()


def pytest_terminal_summary(  # the fault suite's table, gathered from every worker
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    rows = [
        value
        for status in ("passed", "failed")
        for report in terminalreporter.stats.get(status, [])
        for name, value in getattr(report, "user_properties", ())
        if name == OUTCOME
    ]
    if rows:
        terminalreporter.write_sep("=", "fault suite")
        for line in (*Outcome.HEADER, *sorted(rows)):
            terminalreporter.write_line(line)
