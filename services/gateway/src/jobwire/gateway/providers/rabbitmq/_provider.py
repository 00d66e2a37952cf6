"""RabbitMQ provider (``type = "rabbitmq"``), through aio-pika: the storage hooks.

How the semantics table maps onto AMQP (the lease state machine above owns
the rules; this is where they meet the broker):

* **Enqueue** records the jobs (:mod:`.._records`, deduplication there), then
  publishes every new job's message at once, persistent and mandatory, and
  answers when the broker confirmed them all; the records of messages the
  broker did not take are deleted again, so a retry with the same request
  ids enqueues exactly those.
* **Leases are unacked deliveries.** Each worker stream has a channel of its
  own (:mod:`._stream`) whose prefetch is twice the stream's credits; a leased job's
  message stays unacked there. Completing acks it, a lost lease requeues it
  at once (the attempt counted in the record), a dead job is rejected into
  the dead-letter queue; all of that once the record's change is committed.
  A gateway that dies takes its channels with it, and the broker requeues
  their messages by itself; whoever receives one next counts the lost
  attempt (:mod:`._receipt`).
* **Delays** (up to 15 minutes; the scheduler holds longer ones) and
  **backoffs** wait in delay queues with per-message TTLs that dead-letter
  back into the job's queue (:mod:`._topology`): durable on the broker, no
  plugin, and a failed job waits there without holding a prefetch slot.
  That is why they are not the scheduler's: a backoff is decided by a
  gateway at the end of an attempt, often a second long, and must survive
  that gateway, which the broker does for the price of one publish.
* **Other gateways' changes** (cancellations, purges, pauses) are looked up
  in the records every ``sync_interval`` (``RemoteChanges``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import ClassVar

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway._provider_config import RabbitMqProviderSettings
from jobwire.gateway.providers._records import RecordsProvider, RecordTables
from jobwire.gateway.providers._types import Claim, Consumer, Ending, RevokeReason
from jobwire.gateway.providers.rabbitmq._broker import Broker
from jobwire.gateway.providers.rabbitmq._receipt import Receipt, spawn
from jobwire.gateway.providers.rabbitmq._sending import RETRY_PAUSE, Sending
from jobwire.gateway.providers.rabbitmq._stream import Handle, StreamChannel
from jobwire.gateway.providers.rabbitmq._topology import MAX_PARK, Topology

logger = logging.getLogger("jobwire.gateway.rabbitmq")

TABLES = RecordTables("jobwire_rabbitmq_", lock_key=0x6A6F62616D71)
"""The RabbitMQ provider's job records (``jobwire_rabbitmq_jobs``, …)."""
_MAX_PURGED_HERE = 1_000_000


class RabbitMqProvider(RecordsProvider[Handle]):
    """Queues on RabbitMQ, job records in the gateway's database (``type = "rabbitmq"``)."""

    max_native_delay: ClassVar[float | None] = MAX_PARK

    def __init__(self, settings: RabbitMqProviderSettings, events: JobEvents) -> None:
        super().__init__(settings, events, TABLES)
        self._broker = Broker(settings)
        self._broker.on_lost = self._connection_lost
        self._topology = Topology(settings, self._broker.connection)
        self._streams: dict[Consumer, StreamChannel] = {}
        self._held: dict[str, Handle] = {}
        """Messages of the jobs leased on this gateway, by job id."""
        self._paused: frozenset[str] = frozenset()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending = Sending(self._broker, self._topology, self._records)
        self._receipt = Receipt(
            self._records,
            events,
            self._sending.park,
            self._operations.purged_among,
            lambda: self.host.leased_job_ids(),
        )

    async def open(self) -> None:
        """Open the records database, connect, and declare (or check) the dead letters."""
        await self._records.open()
        try:
            await self._broker.open()
            await self._topology.open()
            await self._topology.ensure_queue("default")
            self._follow_pauses(await self._operations.paused())
        except BaseException:
            await self._broker.aclose()
            await self._records.close()
            raise
        self._sync.start()

    async def aclose(self) -> None:
        """Stop looking up changes, commit the records, close the channels and connection."""
        await self._sync.stop()
        await self._records.close()
        await self._sending.aclose()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for stream in list(self._streams.values()):
            await stream.close()
        self._streams.clear()
        await self._broker.aclose()

    # Jobs --------------------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Record jobs, then publish their messages; nothing is published for a job refused."""
        # A client that gives up half-way must not leave records without messages.
        return await asyncio.shield(self._insert(jobs))

    async def _insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        for queue in {new.queue for new in jobs}:
            await self._topology.ensure_queue(queue)
        now = time.time()
        candidates = [(new, JobRecord.create(new, now)) for new in jobs]
        results = await self._records.insert(candidates, now)
        fresh = [record for (record, duplicate) in results if not duplicate]
        if fresh:
            await self._sending.publish(fresh, now)
        return results

    # The broker's part of the records' operations ----------------------------

    def _let_go(self, job_id: str) -> Handle | None:
        return self._held.pop(job_id, None)

    def _drop(self, handle: Handle) -> None:
        handle.ack()

    async def _publish_replayed(self, jobs: Sequence[JobRecord], now: float) -> None:
        outcomes = await self._broker.publish(
            [await self._sending.message(job, now, 0) for job in jobs]
        )
        error = next((e for e in outcomes if e is not None), None)
        if error is not None:
            raise error

    async def _broker_counts(self, queue: str) -> tuple[int, int, int] | None:
        """Ready on the broker; unacked here."""
        ready = await self._topology.depth(queue)
        if ready is None:
            return None
        return ready, sum(1 for h in self._held.values() if h.queue == queue), 0

    def _purged(self, job_ids: Sequence[str]) -> None:
        if len(self._receipt.purged_here) > _MAX_PURGED_HERE:
            self._receipt.purged_here.clear()  # the records' tombstones still tell
        self._receipt.purged_here.update(job_ids)

    def _follow_pauses(self, queues: Collection[str]) -> None:
        paused = frozenset(queues)
        if paused != self._paused:
            self._paused = paused
            for stream in self._streams.values():
                stream.wake()

    # Leases ------------------------------------------------------------------

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[Handle]]:
        """Wait for deliveries on the consumer's channel and lease them."""
        stream = self._streams.get(consumer)
        if stream is None:
            queues = {name: await self._topology.ensure_queue(name) for name in consumer.queues}
            stream = self._streams.setdefault(
                consumer,
                StreamChannel(
                    self._broker,
                    consumer,
                    queues,
                    self._channel_lost,
                    self._sending.hand_back,
                    self.host.in_use,
                    self,
                ),
            )
        while True:
            try:
                handles = await stream.take(max_jobs, lambda: self._paused)
            except asyncio.CancelledError:
                if consumer.draining:
                    spawn(self._tasks, stream.stop())
                raise
            except Exception as error:
                # The connection went while (re)opening the channel: it is reopened.
                logger.debug("worker channel of %s not open: %s", consumer.worker_id, error)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            try:
                claims = await self._receipt.accept(consumer, handles)
            except UnavailableError as error:
                # The records database is away: the deliveries wait on the
                # channel, and the stream stays open.
                logger.warning("job records unavailable (%s); retrying", error)
                stream.unget(handles)
                await asyncio.sleep(RETRY_PAUSE)
                continue
            for claim in claims:
                self._held[claim.job.id] = claim.handle
            if claims:
                return claims

    async def settle(self, endings: Sequence[Ending[Handle]]) -> None:
        """Record each ending; the message follows once that is committed."""
        for ending in endings:
            job, handle, end = ending.lease.job, ending.lease.handle, ending.end
            self._held.pop(job.id, None)
            job.end_attempt(end)
            if end.state is JobState.COMPLETED:
                self._records.save(job, handle.ack)
            elif end.state is JobState.FAILED:
                assert end.run_at is not None
                self._records.save(
                    job,
                    functools.partial(
                        self._sending.park, job, handle, end.run_at - end.time, job.attempt
                    ),
                )
            elif end.state is JobState.PENDING:
                self._records.save(job, handle.requeue)
            else:
                self._records.save(job, handle.reject)

    async def release(self, consumer: Consumer) -> None:
        """Close the stream's channel: the broker requeues what it still holds."""
        stream = self._streams.pop(consumer, None)
        if stream is not None:
            await stream.close()

    # Peers: a stream's deliveries beyond its credits, for the others ---------

    def waits(self, stream: StreamChannel) -> None:
        """``stream`` has nothing delivered: streams of its queues give up their surplus."""
        for other in self._streams.values():
            if other is not stream and other.surplus > 0 and other.queues.keys() & stream.queues:
                other.give_up_surplus()

    def wait_for(self, stream: StreamChannel, queue: str) -> bool:
        """Whether another stream of this gateway waits for jobs of ``queue``."""
        return any(
            other.waiting and queue in other.queues
            for other in self._streams.values()
            if other is not stream
        )

    # Internals ---------------------------------------------------------------

    def _connection_lost(self) -> None:
        """Every channel is gone and the broker requeued their messages: the leases are lost."""
        for stream in self._streams.values():
            stream.lost()
        self._lose_held(lambda handle: True)

    def _channel_lost(self, stream: StreamChannel) -> None:
        """The broker closed one stream's channel (``consumer_timeout``): its leases are lost."""
        self._lose_held(lambda handle: handle.stream is stream)

    def _lose_held(self, which: Callable[[Handle], bool]) -> None:
        host = self.host
        for job_id, handle in list(self._held.items()):
            if which(handle):
                del self._held[job_id]
                host.lost(
                    job_id,
                    RevokeReason.EXPIRED,
                    "the broker took the job back (connection or channel lost); "
                    "it is in its queue again",
                )
