"""One worker stream's channel: prefetch = its credits, deliveries, acks in runs.

Each worker stream connected to a gateway gets a channel of its own with a
consumer on each of its queues and ``basic.qos`` prefetch equal to the
stream's credits, so the broker never pushes more than the gateway's workers
can take, and a delivered job stays unacked on that channel while it is
leased. Acks are gathered and sent as ``basic.ack(multiple=True)`` up to the
lowest delivery tag still unacked (workers answer out of order), the rest one
by one. Answers reach the broker in the order they were given: one writer per
channel sends them (aiormq's bounded write queue lets concurrent senders
overtake each other, and a multiple ack sent before a reject of a tag it
covers acks that message, then closes the channel on the reject's unknown
tag). Closing the channel (the stream ended, the gateway died) makes the
broker requeue whatever it still held.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Coroutine
from typing import Any

import aiormq
from aio_pika.abc import AbstractChannel

from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.rabbitmq._broker import Broker
from jobwire.gateway.providers.rabbitmq._codec import redelivered

logger = logging.getLogger("jobwire.gateway.rabbitmq")

Delivered = aiormq.abc.DeliveredMessage
_CHANNELS = itertools.count()
Answer = Callable[[], Awaitable[object]]
"""An ack, reject or cancel bound to its channel, sent when the writer gets to it."""


class Handle:
    """A leased job's message: its channel and delivery tag."""

    __slots__ = (
        "body",
        "generation",
        "job_id",
        "properties",
        "queue",
        "redelivered",
        "returns",
        "stream",
        "tag",
    )

    def __init__(self, stream: StreamChannel, message: Delivered, queue: str) -> None:
        self.stream = stream
        self.generation = stream.generation
        delivery = message.delivery
        assert isinstance(delivery, aiormq.spec.Basic.Deliver)
        self.tag: int = delivery.delivery_tag or 0
        self.properties = message.header.properties
        headers = self.properties.headers or {}
        self.redelivered: bool = redelivered(delivery, headers)
        count = headers.get("x-delivery-count")
        # Times the broker gave this message back to its queue (x-delivery-count
        # of quorum queues; classic queues only say whether it did).
        self.returns: int = count if isinstance(count, int) else int(bool(delivery.redelivered))
        self.body = message.body
        self.queue = queue
        self.job_id = ""

    def ack(self) -> None:
        """Ack the message (in a run with others where the tags allow)."""
        self.stream.ack(self)

    def requeue(self, delay: float = 0.0) -> None:
        """Put the message back in its queue (after ``delay`` seconds): not an attempt."""
        if delay:
            asyncio.get_running_loop().call_later(delay, self.stream.settle, self, True)
        else:
            self.stream.settle(self, True)

    def reject(self) -> None:
        """Reject it without requeue: the queue dead-letters it to the dead-letter queue."""
        self.stream.settle(self, False)


class StreamChannel:
    """The channel of one worker stream, reopened after a reconnection.

    Args:
        broker: the connection.
        consumer: the stream.
        queues: the stream's AMQP queue of each of its jobwire queues.
        on_lost: called when the broker closes the channel alone (the connection
            stays): ``consumer_timeout`` ran out on one of its deliveries.
        in_use: the credits the stream's leases use (expired ones not answered
            for included).
        hand_back: returns a delivery that started no attempt to its queue as a
            fresh message (a requeue would count as a delivery, see ``_receipt``).
    """

    def __init__(
        self,
        broker: Broker,
        consumer: Consumer,
        queues: dict[str, str],
        on_lost: Callable[[StreamChannel], None],
        in_use: Callable[[Consumer], int],
        hand_back: Callable[[Handle], None],
    ) -> None:
        self._broker = broker
        self._hand_back = hand_back
        self._on_lost = on_lost
        self._in_use = in_use
        self._throttled = False
        self.consumer = consumer
        self.queues = queues
        self.generation = -1
        """The open channel's number, unique in the process: a handle of an earlier
        channel (even on the same connection, after the broker closed the channel
        alone) is never answered on this one, whose delivery tags start again at 1."""
        self._connection = -1
        """The broker's connection generation the channel was opened on."""
        self._channel: AbstractChannel | None = None
        self._raw: aiormq.abc.AbstractChannel | None = None
        self._tags: dict[str, str] = {}
        self._buffer: deque[Handle] = deque()
        self._wake = asyncio.Event()
        self._unacked: dict[int, None] = {}
        """Delivery tags not acked or rejected yet, in delivery order."""
        self._to_ack: set[int] = set()
        self._flushing = False
        self._answers: deque[Answer] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.prefetch = 0

    @property
    def live(self) -> bool:
        """Whether the channel is open on the current connection."""
        return (
            self._raw is not None
            and not self._raw.is_closed
            and self._connection == self._broker.generation
        )

    async def take(self, max_jobs: int, paused: Callable[[], Collection[str]]) -> list[Handle]:
        """Wait for deliveries from the unpaused queues; return up to ``max_jobs``.

        ``paused()`` names the paused queues as of now (a pause wakes the wait).
        """
        while True:
            await self.follow(paused())
            if self._buffer:
                taken: list[Handle] = []
                while self._buffer and len(taken) < max_jobs:
                    taken.append(self._buffer.popleft())
                return taken
            self._wake.clear()
            await self._wake.wait()

    def unget(self, handles: list[Handle]) -> None:
        """Put deliveries taken back in front, in order (their job could not be looked up)."""
        live = [h for h in handles if h.generation == self.generation]
        self._buffer.extendleft(reversed(live))
        if live:
            self._wake.set()

    def wake(self) -> None:
        """Make a waiting :meth:`take` look again (a pause, a reconnection)."""
        self._wake.set()

    async def follow(self, paused: Collection[str]) -> None:
        """Open the channel if needed; consume from the unpaused queues only."""
        if not self.live:
            await self._open()
        # Asked for jobs: the stream has credits free again.
        self._throttled = False
        raw = self._raw
        assert raw is not None
        credits = max(1, self.consumer.credits)
        if credits != self.prefetch:
            # The worker granted more credits: a prefetch applies to consumers
            # started after it, so the consumers start again.
            self.prefetch = credits
            await raw.basic_qos(prefetch_count=credits)
            for consumer_tag in self._tags.values():
                await raw.basic_cancel(consumer_tag)
            self._tags.clear()
        for name, amqp in self.queues.items():
            tag = self._tags.get(name)
            if name in paused and tag is not None:
                del self._tags[name]
                with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                    await raw.basic_cancel(tag)
                self._return_buffered(name)
            elif name not in paused and tag is None:
                ok = await raw.basic_consume(amqp, self._on_message(name), no_ack=False)
                self._tags[name] = ok.consumer_tag or ""

    async def stop(self) -> None:
        """Stop consuming; put the messages delivered and not leased back."""
        raw = self._raw
        if raw is None or not self.live:
            return
        for tag in list(self._tags.values()):
            with contextlib.suppress(aiormq.exceptions.AMQPError, ConnectionError):
                await raw.basic_cancel(tag)
        self._tags.clear()
        self._return_buffered(None)

    async def close(self) -> None:
        """Send the answers given, then close the channel: the broker requeues the rest."""
        await self.stop()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer
        self._tags.clear()
        self._buffer.clear()
        channel, self._channel, self._raw = self._channel, None, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(Exception):
                await channel.close()

    def lost(self) -> list[Handle]:
        """The connection is gone: forget the channel; return the buffered handles."""
        buffered = list(self._buffer)
        self._buffer.clear()
        self._tags.clear()
        self._unacked.clear()
        self._to_ack.clear()
        self._answers.clear()  # their tags died with the channel
        self._channel = self._raw = None
        self._wake.set()
        return buffered

    # Answers -----------------------------------------------------------------

    def ack(self, handle: Handle) -> None:
        if handle.generation != self.generation or handle.tag not in self._unacked:
            return  # its channel is gone: the broker requeued it already
        self._to_ack.add(handle.tag)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._spawn_flush)

    def settle(self, handle: Handle, requeue: bool) -> None:
        raw = self._raw
        if handle.generation != self.generation or raw is None or handle.tag not in self._unacked:
            return
        del self._unacked[handle.tag]
        self._send(functools.partial(raw.basic_reject, handle.tag, requeue=requeue, wait=False))

    def _spawn_flush(self) -> None:
        self._flushing = False
        raw = self._raw
        if raw is None or not self._to_ack:
            self._to_ack.clear()
            return
        to_ack, self._to_ack = self._to_ack, set()
        run = 0
        for tag in self._unacked:
            if tag not in to_ack:
                break
            run = tag
        if run:
            for tag in list(self._unacked):
                if tag > run:
                    break
                del self._unacked[tag]
                to_ack.discard(tag)
            self._send(functools.partial(raw.basic_ack, run, multiple=True, wait=False))
        for tag in sorted(to_ack):
            self._unacked.pop(tag, None)
            self._send(functools.partial(raw.basic_ack, tag, wait=False))

    def _send(self, answer: Answer) -> None:
        """Queue an answer for the channel's writer, behind those given before it."""
        self._answers.append(answer)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="jobwire-rabbitmq-answers")

    async def _write(self) -> None:
        # Each answer is bound to the channel it was given on: one of a channel
        # lost meanwhile fails there (its tags died with it) and is dropped.
        while self._answers:
            answer = self._answers.popleft()
            try:
                await answer()
            except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as error:
                logger.debug("an answer to RabbitMQ was not sent: %s", error)

    # Deliveries --------------------------------------------------------------

    async def _open(self) -> None:
        self.lost()
        self.prefetch = max(1, self.consumer.credits)
        channel, raw = await self._broker.channel(self.prefetch)
        self._channel, self._raw = channel, raw
        self._connection = self._broker.generation
        self.generation = next(_CHANNELS)
        channel.close_callbacks.add(self._closed)

    def _closed(self, channel: object, error: BaseException | None = None) -> None:
        if channel is not self._channel or self._connection != self._broker.generation:
            return  # closed by us, or with the connection (the provider knows)
        if self._broker.closing:
            return
        logger.warning(
            "RabbitMQ closed the channel of worker %s (%s); its jobs are back in their "
            "queues (is consumer_timeout shorter than a job?)",
            self.consumer.worker_id,
            error,
        )
        self.lost()
        self._on_lost(self)

    def _on_message(self, queue: str) -> Callable[[Delivered], Coroutine[Any, Any, None]]:
        async def deliver(message: Delivered) -> None:
            if message.channel is not self._raw:
                return
            handle = Handle(self, message, queue)
            self._unacked[handle.tag] = None
            consumer = self.consumer
            if len(self._buffer) >= consumer.credits - self._in_use(consumer):
                # More than the stream has credits for (the broker counts an
                # expired lease's requeued message as room, the stream does not
                # while its worker owes an answer): stop consuming until it asks.
                self._hand_back(handle)
                self._throttle()
                return
            self._buffer.append(handle)
            self._wake.set()

        return deliver

    def _throttle(self) -> None:
        raw = self._raw
        if self._throttled or raw is None:
            return
        self._throttled = True
        for tag in self._tags.values():
            self._send(functools.partial(raw.basic_cancel, tag))
        self._tags.clear()

    def _return_buffered(self, queue: str | None) -> None:
        kept: deque[Handle] = deque()
        for handle in self._buffer:
            if queue is None or handle.queue == queue:
                self._hand_back(handle)
            else:
                kept.append(handle)
        self._buffer = kept
