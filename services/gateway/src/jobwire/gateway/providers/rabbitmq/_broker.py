"""The gateway's connection to RabbitMQ: opened, watched, reopened; publishing with confirms.

One AMQP connection per gateway. When the broker closes it (restart,
``rabbitmqctl close_all_connections``, a network partition), every channel
on it is gone and the broker has put every message they held unacked back
in its queue: the provider is told (``on_lost``) so that the leases on those
messages end, and the connection is opened again with backoff, the worker
streams staying connected meanwhile. Publishes are confirmed: a batch is
sent at once and answered when the broker confirmed every message of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp.commands import Basic

from jobwire.gateway._provider_config import RabbitMqProviderSettings
from jobwire.gateway.providers.rabbitmq._errors import (
    BrokerRefusedError,
    BrokerUnavailableError,
    QueueMissingError,
)

logger = logging.getLogger("jobwire.gateway.rabbitmq")

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 2.0
_CONFIRM_TIMEOUT = 30.0


@dataclass(slots=True, frozen=True)
class Outgoing:
    """One message to publish."""

    exchange: str
    routing_key: str
    body: bytes
    properties: Any


def broker_url(settings: RabbitMqProviderSettings) -> str:
    """The URL to connect with: the configured one, its credentials overridden."""
    parts = urlsplit(settings.url.get_secret_value())
    user = settings.username if settings.username is not None else parts.username
    password = (
        settings.password.get_secret_value() if settings.password is not None else parts.password
    )
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    if user is not None:
        credentials = quote(user, safe="")
        if password is not None:
            credentials += ":" + quote(password, safe="")
        netloc = f"{credentials}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def where(settings: RabbitMqProviderSettings) -> str:
    """The broker's address for messages: no credentials."""
    parts = urlsplit(settings.url.get_secret_value())
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path or '/'}"


class Broker:
    """The connection, reopened while the gateway runs; a confirming publisher channel."""

    def __init__(self, settings: RabbitMqProviderSettings) -> None:
        self._url = broker_url(settings)
        self.where = where(settings)
        self._timeout = settings.connect_timeout.total_seconds()
        self._connection: AbstractConnection | None = None
        self._publisher: aiormq.abc.AbstractChannel | None = None
        self._up = asyncio.Event()
        self._closing = False
        self._reconnecting: asyncio.Task[None] | None = None
        self.generation = 0
        """Counts connections: a channel of an older one is gone."""
        self.on_lost: Callable[[], None] = lambda: None
        self.on_back: Callable[[], None] = lambda: None

    @property
    def closing(self) -> bool:
        """Whether the gateway is closing the connection."""
        return self._closing

    async def open(self) -> None:
        """Connect; a broker that cannot be reached fails the start, naming it."""
        try:
            await self._connect()
        except Exception as error:
            raise RuntimeError(
                f"provider.url: cannot connect to RabbitMQ at {self.where}: {_brief(error)}"
            ) from None

    async def aclose(self) -> None:
        """Close the connection (the broker requeues whatever is still unacked)."""
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = None

    async def connection(self) -> AbstractConnection:
        """The open connection, waiting while it is being reopened."""
        await self._up.wait()
        assert self._connection is not None
        return self._connection

    async def channel(self, prefetch: int) -> tuple[AbstractChannel, aiormq.abc.AbstractChannel]:
        """A new channel (and its aiormq channel) with ``prefetch`` per consumer."""
        connection = await self.connection()
        channel = await connection.channel(publisher_confirms=False)
        raw = await channel.get_underlay_channel()
        await raw.basic_qos(prefetch_count=prefetch)
        return channel, raw

    async def publish(self, messages: Sequence[Outgoing]) -> list[BaseException | None]:
        """Publish every message at once (mandatory, persistent); answer once all are confirmed.

        Returns per message None (confirmed) or why not. Waits a connect
        timeout at most for a connection that is being reopened.
        """
        try:
            async with asyncio.timeout(self._timeout):
                await self._up.wait()
        except TimeoutError:
            error = BrokerUnavailableError(f"RabbitMQ at {self.where} unreachable; retry later")
            return [error] * len(messages)
        publisher = self._publisher
        assert publisher is not None
        try:
            async with asyncio.timeout(_CONFIRM_TIMEOUT):
                answers = await asyncio.gather(
                    *(
                        publisher.basic_publish(
                            m.body,
                            exchange=m.exchange,
                            routing_key=m.routing_key,
                            properties=m.properties,
                            mandatory=True,
                        )
                        for m in messages
                    ),
                    return_exceptions=True,
                )
        except TimeoutError:
            error = BrokerUnavailableError(
                f"RabbitMQ did not confirm within {_CONFIRM_TIMEOUT:g}s (a resource alarm?)"
            )
            return [error] * len(messages)
        return [_outcome(answer, m) for answer, m in zip(answers, messages, strict=True)]

    async def _connect(self) -> None:
        connection = await aio_pika.connect(self._url, timeout=self._timeout)
        try:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            publisher = await channel.get_underlay_channel()
        except BaseException:
            await connection.close()
            raise
        connection.close_callbacks.add(self._closed)
        self._connection, self._publisher = connection, publisher
        self.generation += 1
        self._up.set()

    def _closed(self, connection: Any, error: BaseException | None = None) -> None:
        if self._closing or connection is not self._connection:
            return
        self._up.clear()
        self._connection = self._publisher = None
        logger.warning("connection to RabbitMQ at %s lost (%s); reconnecting", self.where, error)
        self.on_lost()
        self._reconnecting = asyncio.get_running_loop().create_task(
            self._reconnect(), name="jobwire-rabbitmq-reconnect"
        )

    async def _reconnect(self) -> None:
        failures = 0
        while not self._closing:
            try:
                await self._connect()
            except Exception as error:
                failures += 1
                delay = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2 ** (failures - 1))
                (logger.warning if failures == 1 else logger.debug)(
                    "reconnecting to RabbitMQ at %s failed (%s); retrying in %.1fs",
                    self.where,
                    _brief(error),
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            logger.warning("reconnected to RabbitMQ at %s", self.where)
            self.on_back()
            return


def _outcome(answer: Any, message: Outgoing) -> BaseException | None:
    if isinstance(answer, Basic.Ack):
        return None
    if isinstance(answer, aiormq.exceptions.PublishError):
        target = message.exchange or message.routing_key
        return QueueMissingError(
            f"RabbitMQ returned a message for {target!r} as unroutable (its queue was deleted?)"
        )
    if isinstance(answer, Basic.Nack):
        return BrokerUnavailableError("RabbitMQ refused to take a message (nack); retry later")
    if isinstance(answer, BrokerRefusedError):
        return answer
    if isinstance(answer, BaseException):
        return BrokerUnavailableError(f"RabbitMQ unavailable: {_brief(answer)}; retry later")
    return BrokerUnavailableError(f"unexpected answer from RabbitMQ: {answer!r}")


def _brief(error: BaseException) -> str:
    return (str(error) or type(error).__name__).splitlines()[0][:200]
