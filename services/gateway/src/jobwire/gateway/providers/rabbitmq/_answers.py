"""The answers to one channel's deliveries: acks in runs, sent in order by one writer.

Acks are gathered and sent as ``basic.ack(multiple=True)`` up to the lowest
delivery tag still unacked (workers answer out of order), the rest one by
one. Answers reach the broker in the order they were given: one writer per
channel sends them (aiormq's bounded write queue lets concurrent senders
overtake each other, and a multiple ack sent before a reject of a tag it
covers acks that message, then closes the channel on the reject's unknown
tag).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import aiormq

logger = logging.getLogger("jobwire.gateway.rabbitmq")

Answer = Callable[[], Awaitable[object]]
"""An ack, reject or cancel bound to its channel, sent when the writer gets to it."""


class Answers:
    """What is owed to the broker on one open channel (:meth:`opened` starts afresh)."""

    def __init__(self) -> None:
        self._raw: aiormq.abc.AbstractChannel | None = None
        self.unacked: dict[int, None] = {}
        """Delivery tags not acked or rejected yet, in delivery order."""
        self._to_ack: set[int] = set()
        self._flushing = False
        self._queue: deque[Answer] = deque()
        self._writer: asyncio.Task[None] | None = None

    def opened(self, raw: aiormq.abc.AbstractChannel | None) -> None:
        """Answer on ``raw`` from now on; what was owed on the last channel died with it."""
        self._raw = raw
        self.unacked.clear()
        self._to_ack.clear()
        self._queue.clear()

    def delivered(self, tag: int) -> None:
        """A delivery arrived: its answer is owed."""
        self.unacked[tag] = None

    async def sent(self) -> None:
        """Wait until the answers given so far are written."""
        if self._flushing:
            self._flush()  # the acks gathered in this turn of the loop
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer

    def ack(self, tag: int) -> None:
        """Ack a delivery, in a run with others where the tags allow."""
        if tag not in self.unacked:
            return
        self._to_ack.add(tag)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def settle(self, tag: int, requeue: bool) -> None:
        """Reject a delivery, back to its queue or (without requeue) to dead letters."""
        raw = self._raw
        if raw is None or tag not in self.unacked:
            return
        del self.unacked[tag]
        self.send(functools.partial(raw.basic_reject, tag, requeue=requeue, wait=False))

    def send(self, answer: Answer) -> None:
        """Queue an answer for the channel's writer, behind those given before it."""
        self._queue.append(answer)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="jobwire-rabbitmq-answers")

    def _flush(self) -> None:
        self._flushing = False
        raw = self._raw
        if raw is None or not self._to_ack:
            self._to_ack.clear()
            return
        to_ack, self._to_ack = self._to_ack, set()
        run = 0
        for tag in self.unacked:
            if tag not in to_ack:
                break
            run = tag
        if run:
            for tag in list(self.unacked):
                if tag > run:
                    break
                del self.unacked[tag]
                to_ack.discard(tag)
            self.send(functools.partial(raw.basic_ack, run, multiple=True, wait=False))
        for tag in sorted(to_ack):
            self.unacked.pop(tag, None)
            self.send(functools.partial(raw.basic_ack, tag, wait=False))

    async def _write(self) -> None:
        # Each answer is bound to the channel it was given on: one of a channel
        # lost meanwhile fails there (its tags died with it) and is dropped.
        while self._queue:
            answer = self._queue.popleft()
            try:
                await answer()
            except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as error:
                logger.debug("an answer to RabbitMQ was not sent: %s", error)
