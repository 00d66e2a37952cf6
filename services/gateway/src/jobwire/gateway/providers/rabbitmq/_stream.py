"""One worker stream's channel: prefetch from its credits, deliveries, acks in runs.

Each worker stream connected to a gateway gets a channel of its own with a
consumer on each of its queues and ``basic.qos`` prefetch of twice the
stream's credits (:func:`window`), and a delivered job stays unacked on that
channel while it is leased. Deliveries beyond the stream's free credits wait
here, unacked, for its next claim; the stream's channel closing (it ended,
the gateway died) puts them back, as does the broker whatever it still held.
Answers go through :mod:`._answers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Collection, Coroutine
from typing import Any, Protocol

import aiormq
from aio_pika.abc import AbstractChannel

from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.rabbitmq._answers import Answers
from jobwire.gateway.providers.rabbitmq._broker import Broker
from jobwire.gateway.providers.rabbitmq._codec import redelivered

logger = logging.getLogger("jobwire.gateway.rabbitmq")

Delivered = aiormq.abc.DeliveredMessage
_CHANNELS = itertools.count()


HOLD = 0.5
"""Seconds deliveries beyond a stream's free credits wait for it to ask.

Then they go back to their queue, for a stream with room on another gateway
(a stream of this gateway that waits for jobs gets them back at once): the
worker is busy for longer than that, or owes answers for expired leases
whose messages the broker, seeing room, sent here again."""


def window(credits: int) -> int:
    """A consumer's prefetch for a stream with ``credits``: room for as many again.

    A finished job's message stays unacked until its record is committed; with
    a prefetch of only the credits, those commits would hold the broker back
    from sending the next jobs while the worker has room for them.
    """
    return 2 * credits


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


class Peers(Protocol):
    """The gateway's worker streams, as one stream sees them."""

    def waits(self, stream: StreamChannel) -> None:
        """``stream`` waits for jobs with nothing delivered: others give up their surplus."""

    def wait_for(self, stream: StreamChannel, queue: str) -> bool:
        """Whether another stream waits for jobs of ``queue``."""


class StreamChannel:
    """The channel of one worker stream, reopened after a reconnection.

    Args:
        broker: the connection.
        consumer: the stream.
        queues: the stream's AMQP queue of each of its jobwire queues.
        on_lost: called when the broker closes the channel alone (the connection
            stays): ``consumer_timeout`` ran out on one of its deliveries.
        hand_back: returns a delivery that started no attempt to its queue as a
            fresh message (a requeue would count as a delivery, see ``_receipt``).
        in_use: the credits the stream's leases use (expired ones not answered
            for included).
        peers: the gateway's other streams, for deliveries one has no room for.
    """

    def __init__(
        self,
        broker: Broker,
        consumer: Consumer,
        queues: dict[str, str],
        on_lost: Callable[[StreamChannel], None],
        hand_back: Callable[[Handle], asyncio.Task[None]],
        in_use: Callable[[Consumer], int],
        peers: Peers,
    ) -> None:
        self._broker = broker
        self._in_use = in_use
        self._peers = peers
        self.waiting = False
        """Whether a claim waits here with nothing delivered."""
        self._hand_back = hand_back
        self._handing_back: set[asyncio.Task[None]] = set()
        """Hand-backs whose ack is not given yet: the channel closes after them."""
        self._closing = False
        self._on_lost = on_lost
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
        self._asked = 0
        """Claims that took from the buffer; the hold timer compares."""
        self._hold: asyncio.TimerHandle | None = None
        self._answers = Answers()
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
                self._asked += 1
                taken: list[Handle] = []
                while self._buffer and len(taken) < max_jobs:
                    taken.append(self._buffer.popleft())
                return taken
            self._wake.clear()
            self.waiting = True
            self._peers.waits(self)
            try:
                await self._wake.wait()
            finally:
                self.waiting = False

    @property
    def surplus(self) -> int:
        """Deliveries held beyond the stream's free credits."""
        free = self.consumer.credits - self._in_use(self.consumer)
        return len(self._buffer) - max(0, free)

    def give_up_surplus(self) -> None:
        """Hand back the deliveries beyond the free credits, newest first.

        The consumers go on: cancelling one races with its deliveries under
        way, and a consumer started again has a fresh window while the old
        one's deliveries are still unacked here.
        """
        if self._closing:
            return
        for _ in range(self.surplus):
            self._give_back(self._buffer.pop())

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
        raw = self._raw
        assert raw is not None
        credits = max(1, self.consumer.credits)
        if credits != self.prefetch:
            # The worker granted more credits: a prefetch applies to consumers
            # started after it, so the consumers start again.
            self.prefetch = credits
            await raw.basic_qos(prefetch_count=window(credits))
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
        """Send the answers given, then close the channel: the broker requeues the rest.

        A delivery handed back is acked once its copy is confirmed: closing
        before that ack would put the job in its queue twice.
        """
        self._closing = True  # what is delivered from now on goes back with the channel
        await self.stop()
        while self._handing_back:
            await asyncio.gather(*self._handing_back, return_exceptions=True)
        await self._answers.sent()
        # Nothing more goes out on it: a frame on a closed channel makes the
        # broker close the whole connection (CHANNEL_ERROR).
        self._answers.opened(None)
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
        self._answers.opened(None)  # their tags died with the channel
        self._channel = self._raw = None
        self._wake.set()
        return buffered

    # Answers -----------------------------------------------------------------

    def ack(self, handle: Handle) -> None:
        if handle.generation == self.generation:  # else the broker requeued it already
            self._answers.ack(handle.tag)

    def settle(self, handle: Handle, requeue: bool) -> None:
        if handle.generation == self.generation:
            self._answers.settle(handle.tag, requeue)

    # Deliveries --------------------------------------------------------------

    async def _open(self) -> None:
        self.lost()
        self.prefetch = max(1, self.consumer.credits)
        channel, raw = await self._broker.channel(window(self.prefetch))
        self._channel, self._raw = channel, raw
        self._answers.opened(raw)
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
            self._answers.delivered(handle.tag)
            # Beyond the stream's free credits (each queue's consumer has a window
            # of its own; an expired lease's message went back while its worker
            # still owes an answer), a delivery waits here until the worker asks
            # (see give_up_surplus for when it goes back).
            self._buffer.append(handle)
            self._wake.set()
            if self.surplus <= 0:
                return
            if self._peers.wait_for(self, queue):
                self.give_up_surplus()
            elif self._hold is None:
                self._hold = asyncio.get_running_loop().call_later(
                    HOLD, self._held_too_long, self._asked
                )

        return deliver

    def _held_too_long(self, asked: int) -> None:
        self._hold = None
        if self._raw is None or self.surplus <= 0:
            return
        if asked == self._asked:
            self.give_up_surplus()  # not asked for since the timer started
        else:
            self._hold = asyncio.get_running_loop().call_later(
                HOLD, self._held_too_long, self._asked
            )

    def _give_back(self, handle: Handle) -> None:
        task = self._hand_back(handle)
        self._handing_back.add(task)
        task.add_done_callback(self._handing_back.discard)

    def _return_buffered(self, queue: str | None) -> None:
        kept: deque[Handle] = deque()
        for handle in self._buffer:
            if queue is None or handle.queue == queue:
                self._give_back(handle)
            else:
                kept.append(handle)
        self._buffer = kept
