"""Long polling of one SQS queue while consumers wait, and handing out what arrives.

Per queue, a dispatcher runs ``ReceiveMessage`` calls only while consumers
wait in the provider's ``claim``, asking for no more messages than they have
credits, and hands each message to a waiting consumer that takes its type. A
receive call in flight is never cancelled (what SQS already handed over would
stay invisible): messages nobody waits for any more go back at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.sqs._batcher import BATCH
from jobwire.gateway.providers.sqs._errors import sqs_error
from jobwire.gateway.providers.sqs._messages import Received

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

logger = logging.getLogger("jobwire.gateway.sqs")

MAX_POLLS = 10
"""Receive calls in flight per queue: up to 100 messages."""
_FIRST_RECEIVE_BACKOFF = 0.1
_MAX_RECEIVE_BACKOFF = 2.0
# A message whose type no waiting consumer takes goes back for this long, so
# the gateway does not receive it again in a tight loop.
_SKIP_VISIBILITY = 1


class Inbox(Protocol):
    """What a dispatcher needs of the provider."""

    def visibility_for(self, seconds: float) -> int:
        """The SQS visibility covering ``seconds`` of lease."""
        ...

    async def receive_messages(
        self, url: str, count: int, visibility: int
    ) -> Sequence[MessageTypeDef]:
        """One ``ReceiveMessage`` call, long polling."""
        ...

    async def accept(
        self, queue: str, url: str, messages: Sequence[MessageTypeDef], visibility: int
    ) -> list[Received]:
        """Turn received messages into jobs to hand out."""
        ...

    def hand_back(self, items: Iterable[Received], visibility: int) -> None:
        """Return received jobs unleased: visible again after ``visibility`` seconds."""
        ...


class Waiter:
    """A consumer waiting in ``receive`` for up to ``room`` messages."""

    __slots__ = ("consumer", "future", "room", "taken")

    def __init__(self, consumer: Consumer, room: int, future: asyncio.Future[list[Received]]):
        self.consumer = consumer
        self.room = room
        self.future = future
        self.taken: list[Received] = []


class Dispatcher:
    """Long-polls one SQS queue while consumers wait, and hands out what arrives."""

    def __init__(self, inbox: Inbox, queue: str, url: str) -> None:
        self.queue = queue
        self.url = url
        self._inbox = inbox
        self._waiters: dict[Waiter, None] = {}
        self._polls: dict[asyncio.Task[None], int] = {}
        self._receiving: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._closed = False

    @property
    def asked(self) -> int:
        """Messages the receive calls in flight asked for."""
        return sum(self._polls.values())

    def add(self, waiter: Waiter) -> None:
        self._waiters[waiter] = None
        self._top_up()

    def remove(self, waiter: Waiter) -> None:
        self._waiters.pop(waiter, None)

    async def close(self) -> None:
        """Stop polling; what calls in flight received comes back after its visibility.

        Calls still waiting in SQS are cancelled; calls whose messages are being
        looked up in the records finish, so no database work is cut off.
        """
        self._closed = True
        for task in self._receiving:
            task.cancel()
        await asyncio.gather(*self._polls, return_exceptions=True)

    def _top_up(self) -> None:
        """Start receive calls until they ask for what the waiters have room for."""
        if self._closed:
            return
        demand = sum(w.room for w in self._waiters if not w.future.done())
        uncovered = demand - self.asked
        while uncovered > 0 and len(self._polls) < MAX_POLLS:
            count = min(BATCH, uncovered)
            task = asyncio.create_task(self._poll(count), name=f"jobwire-sqs-receive:{self.queue}")
            self._polls[task] = count
            task.add_done_callback(self._poll_done)
            uncovered -= count

    def _poll_done(self, task: asyncio.Task[None]) -> None:
        self._polls.pop(task, None)
        if not task.cancelled() and task.exception() is not None:
            logger.error("SQS receive from %s crashed", self.url, exc_info=task.exception())
        self._top_up()

    async def _poll(self, count: int) -> None:
        inbox = self._inbox
        waiting = [w for w in self._waiters if not w.future.done()]
        visibility = inbox.visibility_for(
            max((w.consumer.lease_duration for w in waiting), default=1)
        )
        task = asyncio.current_task()
        assert task is not None
        try:
            self._receiving.add(task)
            try:
                messages = await inbox.receive_messages(self.url, count, visibility)
            finally:
                self._receiving.discard(task)
            received = await inbox.accept(self.queue, self.url, messages, visibility)
        except Exception as error:
            # The endpoint is gone, throttling after the SDK's retries, or the
            # records database is down: the waiting workers stay connected and
            # the dispatcher tries again with backoff.
            self._failures += 1
            delay = min(_MAX_RECEIVE_BACKOFF, _FIRST_RECEIVE_BACKOFF * 2 ** (self._failures - 1))
            log = logger.warning if self._failures == 1 else logger.debug
            log(
                "receive from queue %r failed (%s); retrying in %.1fs",
                self.queue,
                sqs_error(error, self.url),
                delay,
            )
            await asyncio.sleep(delay)
            return
        if self._failures:
            logger.warning("receive from queue %r works again", self.queue)
            self._failures = 0
        self._dispatch(received)

    def _dispatch(self, received: list[Received]) -> None:
        # Longest waiting first: a consumer served waits again at the back.
        waiters = [w for w in self._waiters if not w.future.done()]
        unwanted: list[Received] = []
        for item in received:
            for waiter in waiters:
                if len(waiter.taken) < waiter.room and waiter.consumer.accepts(item.record.type):
                    waiter.taken.append(item)
                    break
            else:
                unwanted.append(item)
        for waiter in waiters:
            if waiter.taken:
                waiter.future.set_result(waiter.taken)
        # Back at once when nobody waits any more; a little later when the
        # waiting consumers do not take the type (another gateway's may).
        self._inbox.hand_back(unwanted, 0 if not waiters else _SKIP_VISIBILITY)
