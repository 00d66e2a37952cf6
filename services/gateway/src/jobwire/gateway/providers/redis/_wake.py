"""Waking without polling: one pub/sub connection per gateway.

Every script that makes jobs ready publishes the queue's name on the wake
channel; each gateway's listener wakes its claims waiting on that queue, which
then run the claim script. A gateway's own enqueues wake its claims as soon as
the insert script answers, a pub/sub hop sooner (the echo then finds the
claims busy or looking again, which costs one claim that finds nothing).
A cancellation of a job leased by a gateway is published on that gateway's
own cancel channel. Pub/sub is fire and forget: a message sent while the
listener reconnects is lost, so after every (re)connection all waiting claims
look again, and a waiting claim also looks again after ``recheck`` seconds in
case a wake-up went missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator

from redis.asyncio import Redis

from jobwire.gateway.providers.redis._errors import DISCONNECTED
from jobwire.gateway.providers.redis._keys import Keys

logger = logging.getLogger("jobwire.gateway.redis")

_RECONNECT_MAX = 2.0


class Wakeups:
    """The claims of this gateway waiting per queue, and the listener that wakes them.

    Args:
        client: the provider's client (the listener takes one connection of its own).
        keys: the key layout.
        gateway: this gateway's id.
        on_cancel: called with the id of a job leased here that another gateway cancelled.
    """

    def __init__(
        self, client: Redis, keys: Keys, gateway: str, on_cancel: Callable[[str], None]
    ) -> None:
        self._client = client
        self._wake = keys.wake_channel.encode()
        self._cancel = keys.cancel_channel(gateway).encode()
        self._on_cancel = on_cancel
        # Per queue, in the order the claims started waiting: the first woken claims first.
        self._waiting: dict[str, dict[asyncio.Future[None], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Start listening; return once subscribed."""
        self._task = asyncio.get_running_loop().create_task(self._listen())
        await self._subscribed.wait()

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def waiting(self, queues: Iterable[str]) -> Iterator[asyncio.Future[None]]:
        """A future resolved when jobs become ready in one of ``queues``.

        Enter it *before* looking for jobs, so that none made ready between the
        look and the wait is missed.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        names = tuple(queues)
        for name in names:
            self._waiting.setdefault(name, {})[future] = None
        try:
            yield future
        finally:
            for name in names:
                waiters = self._waiting.get(name)
                if waiters is not None:
                    waiters.pop(future, None)
                    if not waiters:
                        del self._waiting[name]

    def wake_all(self, queues: Iterable[str]) -> None:
        """Wake the claims waiting on any of ``queues``."""
        for queue in queues:
            self.wake(queue)

    def wake(self, queue: str | None = None) -> None:
        """Wake the claims waiting on ``queue``, or on every queue."""
        if queue is None:
            futures = dict.fromkeys(f for waiters in self._waiting.values() for f in waiters)
        else:
            futures = self._waiting.get(queue, {})
        for future in futures:
            if not future.done():
                future.set_result(None)

    async def _listen(self) -> None:
        delay = 0.05
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.subscribe(self._wake, self._cancel)
                    self._subscribed.set()
                    delay = 0.05
                    self.wake()  # whatever was published while away
                    async for message in pubsub.listen():
                        self._on_message(message)
            except DISCONNECTED as error:
                logger.warning("Redis pub/sub connection lost (%s); reconnecting", error)
                await asyncio.sleep(delay)
                delay = min(_RECONNECT_MAX, delay * 2)

    def _on_message(self, message: dict[str, object]) -> None:
        if message.get("type") != "message":
            return
        data = message.get("data")
        if not isinstance(data, bytes):
            return
        if message.get("channel") == self._wake:
            self.wake(data.decode())
        else:
            self._on_cancel(data.decode())
