"""What jobwire declares on the broker, and how it checks what it may not declare.

Names, under ``provider.queue_prefix`` (``jobwire.`` by default):

* ``{prefix}NAME``: the queue of jobwire queue ``NAME``, durable, a quorum
  queue (or classic, ``queue_type``); its dead-letter exchange is the default
  exchange with routing key ``{prefix}dead``, so a message rejected without
  requeue (a dead job) or returned ``delivery_limit`` times (a crash loop the
  records did not catch) lands in
* ``{prefix}dead``: the dead-letter queue, classic and durable, its messages
  expiring after ``history_retention`` like the dead jobs' records;
* ``{prefix}delay``: a headers exchange routing a delayed message by its
  ``x-jobwire-delay`` header to one of the
* ``{prefix}delay.<ms>`` queues, classic and durable, no consumers: a message
  waits there for its per-message TTL, then the queue dead-letters it to the
  default exchange under its original routing key, its job queue. Delays are
  sorted into buckets growing by a quarter (``<ms>`` is a bucket's longest
  delay), so a message never waits behind one that expires much later: a
  delay is never early and at most a fifth late.

Queues are declared the first time a gateway uses them (a producer's enqueue,
a worker's queues); with ``declare = false`` they are checked passively and a
missing one is refused, naming it and the arguments to declare it with.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Coroutine
from typing import Any

import aiormq
from aio_pika.abc import AbstractConnection
from pamqp.common import FieldValue

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._provider_config import RabbitMqProviderSettings
from jobwire.gateway.providers.rabbitmq._errors import BrokerRefusedError, QueueMissingError

_FIRST_BUCKET = 0.05
"""Longest delay of the first delay bucket, in seconds."""
_GROWTH = 1.25
MAX_PARK = 900.0
"""Longest stay in a delay queue; a longer delay takes several."""


def bucket_of(delay: float) -> tuple[int, int]:
    """The delay bucket of ``delay`` seconds: its longest delay and the TTL, in ms."""
    delay = min(delay, MAX_PARK)
    k = max(0, math.ceil(math.log(delay / _FIRST_BUCKET, _GROWTH) - 1e-9))
    longest = math.ceil(_FIRST_BUCKET * _GROWTH**k * 1000)
    return longest, max(1, math.ceil(delay * 1000))


class Topology:
    """Names on the broker, and their declaration (or check) once per gateway.

    Args:
        settings: the provider's settings.
        connection: returns the open connection (waits while reconnecting).
    """

    def __init__(
        self,
        settings: RabbitMqProviderSettings,
        connection: Callable[[], Coroutine[Any, Any, AbstractConnection]],
    ) -> None:
        self.prefix = settings.queue_prefix
        self.dead = f"{self.prefix}dead"
        self.delay_exchange = f"{self.prefix}delay"
        self._type = settings.queue_type
        self._declare = settings.declare
        self._limit = settings.delivery_limit
        self._dead_ttl = int(settings.history_retention.total_seconds() * 1000)
        self._connection = connection
        self._done: dict[str, asyncio.Future[None]] = {}

    def queue_name(self, queue: str) -> str:
        """The AMQP queue of jobwire queue ``queue``."""
        return f"{self.prefix}{queue}"

    def queue_arguments(self) -> dict[str, FieldValue]:
        """The arguments of a job queue (the same on every declaration)."""
        arguments: dict[str, FieldValue] = {
            "x-queue-type": self._type,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.dead,
        }
        if self._type == "quorum" and self._limit:
            arguments["x-delivery-limit"] = self._limit
        return arguments

    async def open(self) -> None:
        """Declare (or check) the dead-letter queue and the delay exchange."""
        await self._once(self.dead, self._dead_queue)
        await self._once(self.delay_exchange, self._exchange)

    async def ensure_queue(self, queue: str) -> str:
        """Declare (or check) jobwire queue ``queue``; return its AMQP name."""
        name = self.queue_name(queue)
        await self._once(name, lambda ch: self._job_queue(ch, name))
        return name

    async def ensure_bucket(self, longest_ms: int) -> str:
        """Declare (or check) the delay queue of a bucket; return the header value."""
        bucket = str(longest_ms)
        name = f"{self.delay_exchange}.{longest_ms}ms"
        await self._once(name, lambda ch: self._bucket(ch, name, bucket))
        return bucket

    async def depth(self, queue: str) -> int | None:
        """Messages ready in jobwire queue ``queue``; None when the broker cannot say."""
        name = self.queue_name(queue)
        answer: list[int] = []

        async def count(channel: aiormq.abc.AbstractChannel) -> None:
            ok = await channel.queue_declare(name, passive=True)
            answer.append(int(ok.message_count or 0))

        try:
            await asyncio.wait_for(self._on_fresh_channel(count), 5.0)
        except (QueueMissingError, UnavailableError, TimeoutError):
            return None
        return answer[0] if answer else None

    def forget(self, name: str) -> None:
        """Declare ``name`` again at its next use (it went missing on the broker)."""
        self._done.pop(name, None)

    async def _once(
        self, name: str, declare: Callable[[aiormq.abc.AbstractChannel], Coroutine[Any, Any, None]]
    ) -> None:
        done = self._done.get(name)
        if done is None or (done.done() and done.exception() is not None):
            done = self._done[name] = asyncio.get_running_loop().create_future()
            try:
                await self._on_fresh_channel(declare)
            except BaseException as error:
                done.set_exception(error)
                done.exception()  # retrieved: a later use declares again
                raise
            done.set_result(None)
            return
        await asyncio.shield(done)

    async def _on_fresh_channel(
        self, declare: Callable[[aiormq.abc.AbstractChannel], Coroutine[Any, Any, None]]
    ) -> None:
        # A refused declaration closes its channel: each gets a channel of its own.
        connection = await self._connection()
        channel = await connection.channel(publisher_confirms=False)
        raw = await channel.get_underlay_channel()
        try:
            await declare(raw)
        except aiormq.exceptions.ChannelNotFoundEntity as error:
            raise QueueMissingError(str(error)) from None
        except aiormq.exceptions.ChannelPreconditionFailed as error:
            raise BrokerRefusedError(
                f"RabbitMQ refused a declaration: {_reply(error)}; an existing queue or "
                "exchange has other arguments (delete it, or match provider.queue_type)"
            ) from None
        except (aiormq.exceptions.AMQPConnectionError, ConnectionError) as error:
            raise UnavailableError(f"RabbitMQ unavailable: {error}; retry later") from None
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _job_queue(self, channel: aiormq.abc.AbstractChannel, name: str) -> None:
        arguments = self.queue_arguments()
        if not self._declare:
            await self._check(channel, name, "queue", arguments)
            return
        await channel.queue_declare(name, durable=True, arguments=arguments)

    async def _dead_queue(self, channel: aiormq.abc.AbstractChannel) -> None:
        arguments: dict[str, FieldValue] = {
            "x-queue-type": "classic",
            "x-message-ttl": self._dead_ttl,
        }
        if not self._declare:
            await self._check(channel, self.dead, "queue", arguments)
            return
        await channel.queue_declare(self.dead, durable=True, arguments=arguments)

    async def _exchange(self, channel: aiormq.abc.AbstractChannel) -> None:
        if not self._declare:
            await self._check(channel, self.delay_exchange, "exchange", {"type": "headers"})
            return
        await channel.exchange_declare(self.delay_exchange, exchange_type="headers", durable=True)

    async def _bucket(self, channel: aiormq.abc.AbstractChannel, name: str, bucket: str) -> None:
        arguments: dict[str, FieldValue] = {
            "x-queue-type": "classic",
            "x-dead-letter-exchange": "",
        }
        if not self._declare:
            await self._check(channel, name, "queue", arguments)
            return
        await channel.queue_declare(name, durable=True, arguments=arguments)
        await channel.queue_bind(
            name,
            self.delay_exchange,
            arguments={"x-match": "all", "x-jobwire-delay": bucket},
        )

    async def _check(
        self,
        channel: aiormq.abc.AbstractChannel,
        name: str,
        kind: str,
        arguments: dict[str, FieldValue],
    ) -> None:
        try:
            if kind == "queue":
                await channel.queue_declare(name, passive=True)
            else:
                await channel.exchange_declare(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            what = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
            raise QueueMissingError(
                f"{kind} {name!r} does not exist on the broker and provider.declare is false: "
                f"declare it (durable, {what}) or set provider.declare = true"
            ) from None


def _reply(error: BaseException) -> str:
    args: tuple[object, ...] = tuple(getattr(error, "args", ()))
    return str(args[1] if len(args) > 1 else error)
