"""Replaying jobs on RabbitMQ: the records first, then fresh messages.

A dead job's message went to the dead-letter queue (where it stays for
operators until it expires), a cancelled job's is dropped when delivered. A
replay makes the record pending again (attempt 0) and publishes the job to
its queue as a fresh message built from the record, so a replay with a new
payload works the same. A job still ``FAILED`` has its copy waiting in a
delay queue: RabbitMQ replays dead and cancelled jobs only.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._records import JobRecords, Operations
from jobwire.gateway.providers.rabbitmq._broker import Broker
from jobwire.gateway.providers.rabbitmq._sending import Sending

REPLAYABLE = frozenset({JobState.DEAD, JobState.CANCELLED})
"""The states RabbitMQ replays (a failed job's message waits in a delay queue)."""


class Replays:
    """``RetryJob`` and ``RetryJobs`` on the records and the broker."""

    def __init__(
        self,
        records: JobRecords,
        operations: Operations,
        sending: Sending,
        broker: Broker,
        events: JobEvents,
    ) -> None:
        self._records = records
        self._operations = operations
        self._sending = sending
        self._broker = broker
        self._events = events

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Replay one dead or cancelled job: pending again, as a fresh message."""
        await self._records.flush()
        record = await self._records.get(job_id)
        if record is None:
            return None
        if record.state not in REPLAYABLE:
            return record, False
        stored = await self._replay([record], payload, max_retries)
        return record, bool(stored)

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay every selected dead or cancelled job, once per request id."""
        if request_id:
            done = await self._operations.replayed_count(request_id)
            if done is not None:
                return done
        states = selector.states & REPLAYABLE
        jobs = await self._operations.selected(selector, states, time.time()) if states else []
        count = await self._replay(jobs, None, None, request_id)
        if count is None:  # the same request id, recorded meanwhile by another call
            return await self._operations.replayed_count(request_id) or 0
        self._events.publish_all(jobs)
        return count

    async def _replay(
        self,
        jobs: Sequence[JobRecord],
        payload: bytes | None,
        max_retries: int | None,
        request_id: str = "",
    ) -> int | None:
        now = time.time()
        before = [dataclasses.replace(job) for job in jobs]
        for job in jobs:
            job.replay(now, payload, max_retries)
        count = await self._operations.replay(
            [(job, was.state) for job, was in zip(jobs, before, strict=True)], request_id
        )
        if count is None or not jobs:
            return count
        outcomes = await self._broker.publish(
            [await self._sending.message(job, now, 0) for job in jobs]
        )
        error = next((e for e in outcomes if e is not None), None)
        if error is not None:
            # Not published: the jobs go back as they were and the request id
            # is forgotten, so the same request replays them when retried. (A
            # message published before the failure finds its job dead and is dropped.)
            for old in before:
                self._records.save(old)
            await self._records.flush()
            if request_id:
                await self._operations.forget_request(request_id)
            raise error
        return count
