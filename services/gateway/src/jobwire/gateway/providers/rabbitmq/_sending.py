"""Messages out: new jobs published with confirms, parked in delay queues, handed back.

Every message jobwire publishes goes through here: a batch of new (or
replayed) jobs at once, answered when the broker confirmed them all; a copy
parked in a delay queue (a backoff, a job not due yet, one a stream does
not take), the delivered message acked once the copy is confirmed; a
delivery that started no attempt handed back as a fresh message (a requeue
would count as a return, see :mod:`._receipt`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence

from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._records import JobRecords
from jobwire.gateway.providers.rabbitmq._broker import Broker, Outgoing
from jobwire.gateway.providers.rabbitmq._codec import handed_back, properties
from jobwire.gateway.providers.rabbitmq._errors import QueueMissingError
from jobwire.gateway.providers.rabbitmq._receipt import EARLY, spawn
from jobwire.gateway.providers.rabbitmq._stream import Handle
from jobwire.gateway.providers.rabbitmq._topology import Topology, bucket_of

logger = logging.getLogger("jobwire.gateway.rabbitmq")

RETRY_PAUSE = 0.5
"""Seconds before a message that could not be parked or handed back is requeued."""


class Sending:
    """Publishing for the provider.

    Args:
        broker: the connection.
        topology: names and declarations.
        records: the job records (a refused job's record is deleted again).
    """

    def __init__(self, broker: Broker, topology: Topology, records: JobRecords) -> None:
        self._broker = broker
        self._topology = topology
        self._records = records
        self.tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        """Wait for the parkings and hand-backs under way."""
        while self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def publish(self, jobs: Sequence[JobRecord], now: float) -> None:
        """Publish the jobs' messages; on a refusal, forget their records and raise."""
        outgoing = [await self.message(job, now, job.attempt) for job in jobs]
        outcomes = await self._broker.publish(outgoing)
        failed = [(job, error) for job, error in zip(jobs, outcomes, strict=True) if error]
        if failed:
            # Forget the jobs that were not published, so a retry with the same
            # request ids enqueues exactly those.
            await self._records.delete(job.id for job, _ in failed)
            error = failed[0][1]
            assert error is not None
            if isinstance(error, QueueMissingError):
                for job, _ in failed:
                    self._topology.forget(self._topology.queue_name(job.queue))
            raise error

    async def message(self, job: JobRecord, now: float, after: int) -> Outgoing:
        """A job's message: to its queue, or through a delay queue until its time."""
        queue = self._topology.queue_name(job.queue)
        ahead = (job.schedule_time or now) - now
        if ahead <= EARLY:
            return Outgoing("", queue, job.payload, properties(job, after=after))
        return await self.delayed(job, ahead, after)

    async def delayed(self, job: JobRecord, ahead: float, after: int) -> Outgoing:
        longest, ttl = bucket_of(ahead)
        bucket = await self._topology.ensure_bucket(longest)
        props = properties(job, after=after, bucket=bucket, ttl_ms=ttl)
        exchange = self._topology.delay_exchange
        return Outgoing(exchange, self._topology.queue_name(job.queue), job.payload, props)

    def park(self, job: JobRecord, handle: Handle, delay: float, after: int) -> None:
        """Publish a fresh copy through a delay queue, then ack the delivered message."""
        spawn(self.tasks, self._parking(job, handle, delay, after))

    async def _parking(self, job: JobRecord, handle: Handle, delay: float, after: int) -> None:
        try:
            [error] = await self._broker.publish([await self.delayed(job, delay, after)])
        except Exception as caught:
            error = caught
        if error is None:
            handle.ack()
            return
        # Not parked: back in its queue after a pause, due at once.
        logger.warning("parking job %s for %.1fs failed (%s); requeued", job.id, delay, error)
        if job.state is JobState.FAILED and job.schedule_time is not None:
            job.schedule_time = min(job.schedule_time, time.time())
            self._records.save(job, functools.partial(handle.requeue, RETRY_PAUSE))
        else:
            handle.requeue(RETRY_PAUSE)

    def hand_back(self, handle: Handle) -> asyncio.Task[None]:
        """Return a delivery that started no attempt as a fresh message, then ack it."""
        return spawn(self.tasks, self._handing_back(handle))

    async def _handing_back(self, handle: Handle) -> None:
        props = handle.properties
        props.headers = handed_back(props.headers or {}, handle.returns, handle.redelivered)
        queue = handle.stream.queues[handle.queue]
        [error] = await self._broker.publish([Outgoing("", queue, handle.body, props)])
        if error is None:
            handle.ack()
        else:
            handle.requeue(RETRY_PAUSE)
