"""Messages from SQS on their way to consumers, and held while they are leased.

A received message becomes a :class:`Received` job for a waiting consumer; a
job SQS hands out twice (standard queues deliver at least once; so does a
message whose visibility ran out while its first receipt waited) is one job
with the newest receipt, never two leases. While leased, a message is kept
hidden until the lease's deadline: a lease longer than the visibility cap has
its message's visibility renewed half-way through each period.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import AttemptEnd, Failure, JobRecord, JobState
from jobwire.gateway.providers._records import JobRecords
from jobwire.gateway.providers._retry import exhausted
from jobwire.gateway.providers._types import Consumer, Lease
from jobwire.gateway.providers.sqs._calls import MessageCalls
from jobwire.gateway.providers.sqs._codec import decode
from jobwire.gateway.providers.sqs._dispatcher import Dispatcher, Waiter
from jobwire.gateway.providers.sqs._errors import GONE, EntryFailed
from jobwire.gateway.providers.sqs._messages import Message, Received

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import MessageTypeDef

import logging

logger = logging.getLogger("jobwire.gateway.sqs")


class Receiving:
    """The receiving side of the SQS provider (the dispatchers' :class:`Inbox`).

    Args:
        records: the job records.
        calls: SQS calls on messages.
        events: where jobs found dead on receipt are published.
        url_of: the SQS queue URL of a jobwire queue (raises when unconfigured).
        cap: the longest visibility to give a message, in seconds.
    """

    def __init__(
        self,
        records: JobRecords,
        calls: MessageCalls,
        events: JobEvents,
        url_of: Callable[[str], str],
        cap: int,
    ) -> None:
        self._records = records
        self._calls = calls
        self._events = events
        self._url_of = url_of
        self._cap = cap
        self.dispatchers: dict[str, Dispatcher] = {}
        self.held: dict[str, Message] = {}
        """Messages of the jobs leased on this gateway, by job id."""
        self._received: dict[str, Received] = {}
        self.paused: frozenset[str] = frozenset()
        """Queues nothing is received from (``PauseQueue``, on any gateway)."""
        self._waiting: set[Waiter] = set()
        self.purged_among: Callable[[Collection[str]], Awaitable[set[str]]] = _none_purged

    def set_paused(self, queues: Collection[str]) -> None:
        """Receive from these queues no more (and again from the others)."""
        paused = frozenset(queues)
        if paused == self.paused:
            return
        self.paused = paused
        for waiter in list(self._waiting):
            if not waiter.future.done():
                waiter.future.set_result([])

    def visibility_for(self, seconds: float) -> int:
        """The SQS visibility covering ``seconds`` of lease: whole seconds, at most the cap."""
        return max(1, min(self._cap, math.ceil(seconds)))

    async def take(self, consumer: Consumer, max_jobs: int) -> list[Received]:
        """Wait until the dispatchers of the consumer's unpaused queues hand it jobs."""
        every = [self._dispatcher(name) for name in consumer.queues]
        loop = asyncio.get_running_loop()
        while True:
            # A pause or resume resolves the waiter with nothing: look again.
            dispatchers = [d for d in every if d.queue not in self.paused]
            waiter = Waiter(consumer, max_jobs, loop.create_future())
            self._waiting.add(waiter)
            for dispatcher in dispatchers:
                dispatcher.add(waiter)
            try:
                taken = await waiter.future
            except asyncio.CancelledError:
                # Handed over just as the stream ended: back to the queue at once.
                if waiter.future.done() and not waiter.future.cancelled():
                    self.hand_back(waiter.future.result(), 0)
                raise
            finally:
                self._waiting.discard(waiter)
                for dispatcher in dispatchers:
                    dispatcher.remove(waiter)
            for item in taken:
                self._received.pop(item.record.id, None)
            if taken:
                return taken

    def hold(self, job_id: str, message: Message, deadline: float, now: float) -> None:
        """Keep a leased job's message hidden until ``deadline``."""
        self.held[job_id] = message
        self._keep_hidden(message, deadline, now)

    def release(self, job_id: str) -> Message | None:
        """Stop holding a job's message (its lease ended); return it."""
        message = self.held.pop(job_id, None)
        if message is not None and message.renewal is not None:
            message.renewal.cancel()
            message.renewal = None
        return message

    async def extend(self, leases: Sequence[Lease[Message]]) -> list[bool]:
        """Extend the messages' visibility to the leases' new expiries, in batch calls."""
        now = time.time()
        visibilities = [self.visibility_for(lease.expire_time - now) for lease in leases]
        for lease in leases:
            if lease.handle.renewal is not None:
                lease.handle.renewal.cancel()
                lease.handle.renewal = None
        outcomes = await asyncio.gather(
            *(
                self._calls.change_visibility(lease.handle, visibility)
                for lease, visibility in zip(leases, visibilities, strict=True)
            ),
            return_exceptions=True,
        )
        kept: list[bool] = []
        for lease, visibility, outcome in zip(leases, visibilities, outcomes, strict=True):
            message = lease.handle
            if self.held.get(lease.job.id) is not message:
                kept.append(True)  # the lease ended meanwhile; the state machine knows
                continue
            if isinstance(outcome, EntryFailed) and outcome.code in GONE:
                # The message is gone or another receipt holds it now (its
                # visibility ran out): this lease is lost.
                self.release(lease.job.id)
                kept.append(False)
                continue
            if outcome is not None:
                # SQS is unreachable: keep the lease; if SQS shows the message
                # again meanwhile, another worker may run it too.
                logger.warning("lease extension of %s not sent to SQS: %s", lease.id, outcome)
            else:
                message.visible_until = now + visibility
                message.visibility = visibility
            self._keep_hidden(message, lease.deadline, time.time())
            kept.append(True)
        return kept

    async def close(self) -> None:
        """Stop polling and renewing."""
        for dispatcher in self.dispatchers.values():
            await dispatcher.close()
        for message in self.held.values():
            if message.renewal is not None:
                message.renewal.cancel()

    # The dispatchers' Inbox ---------------------------------------------------

    async def receive_messages(
        self, url: str, count: int, visibility: int
    ) -> Sequence[MessageTypeDef]:
        """One long-polling ``ReceiveMessage`` call."""
        return await self._calls.receive(url, count, visibility)

    async def accept(
        self, queue: str, url: str, messages: Sequence[MessageTypeDef], visibility: int
    ) -> list[Received]:
        """Turn received messages into jobs to hand out.

        Messages of finished jobs are deleted (or dead-lettered); a job whose
        last attempt was lost with its gateway and had no retries left is dead.
        """
        now = time.time()
        decoded: list[tuple[Message, JobRecord]] = []
        for raw in messages:
            message = Message(
                queue=queue,
                url=url,
                message_id=raw.get("MessageId", ""),
                receipt_handle=raw.get("ReceiptHandle", ""),
                body=raw.get("Body", ""),
                attributes=dict(raw.get("MessageAttributes", {})),
                receive_count=int(raw.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                received_at=now,
                visibility=visibility,
                visible_until=now + visibility,
            )
            try:
                decoded.append((message, decode(raw)))
            except ValueError as error:
                self._calls.quarantine(message, error)
        if not decoded:
            return []
        views = await self._records.for_receipt([record.id for _, record in decoded])
        missing = {record.id for _, record in decoded if record.id not in views}
        purged = await self.purged_among(missing) if missing else set()
        received: list[Received] = []
        for message, carried in decoded:
            view = views.get(carried.id)
            if carried.id in purged:
                self._calls.delete(message)
                continue
            if view is None:
                await self._records.adopt(carried)
                record, uncounted = carried, 0
            else:
                record, uncounted = view.record, view.uncounted
            if record.state.is_terminal:
                self._calls.settle_finished(record, message)
                continue
            # A job leased here, or on its way to a consumer, received again:
            # one job, and the newest receipt (the one SQS deletes by).
            twin = self.held.get(record.id) or _message_of(self._received.get(record.id))
            if twin is not None:
                twin.take_receipt(message)
                self._records.count_uncounted(record.id)
                continue
            attempt = max(message.receive_count - uncounted, record.attempt + 1)
            if exhausted(attempt - 1, record.max_retries):
                self._lost_with_its_gateway(record, attempt - 1, message, now)
                continue
            item = Received(record, message, attempt)
            self._received[record.id] = item
            received.append(item)
        return received

    def hand_back(self, items: Iterable[Received], visibility: int) -> None:
        """Return received messages unleased: not an attempt, visible after ``visibility``."""
        for item in items:
            self._received.pop(item.record.id, None)
            self._records.count_uncounted(
                item.record.id,
                functools.partial(self._calls.set_visibility, item.message, visibility),
            )

    # Internals ---------------------------------------------------------------

    def _dispatcher(self, queue: str) -> Dispatcher:
        dispatcher = self.dispatchers.get(queue)
        if dispatcher is None:
            dispatcher = self.dispatchers[queue] = Dispatcher(self, queue, self._url_of(queue))
        return dispatcher

    def _lost_with_its_gateway(
        self, record: JobRecord, lost: int, message: Message, now: float
    ) -> None:
        """The last attempt's lease ended with its gateway, no retry left: dead."""
        record.attempt = lost
        failure = Failure(
            f"attempt {lost} was lost: its lease ended without an answer",
            "WORKER_LOST",
            attempt=lost,
        )
        record.end_attempt(AttemptEnd(JobState.DEAD, now, failure))
        self._records.save(record, functools.partial(self._calls.dead_letter, message))
        self._events.publish(record)

    def _keep_hidden(self, message: Message, deadline: float, now: float) -> None:
        if message.renewal is not None:
            message.renewal.cancel()
            message.renewal = None
        renew_at = message.visible_until - message.visibility / 2
        if message.visible_until < deadline and renew_at < deadline:
            message.renewal = asyncio.get_running_loop().call_later(
                max(0.0, renew_at - now), self._renew, message, deadline
            )

    def _renew(self, message: Message, deadline: float) -> None:
        message.renewal = None
        now = time.time()
        visibility = self.visibility_for(deadline - now)
        self._calls.set_visibility(message, visibility)
        message.visible_until = now + visibility
        message.visibility = visibility
        self._keep_hidden(message, deadline, now)


async def _none_purged(job_ids: Collection[str]) -> set[str]:
    return set()


def _message_of(item: Received | None) -> Message | None:
    return None if item is None else item.message
