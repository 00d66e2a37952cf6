"""Replaying jobs on SQS: a redrive from the dead-letter queue, decided by the records.

A dead job's message was moved to the dead-letter queue (or deleted when none
is configured); a cancelled job's message is deleted. A replay makes the
record pending again (attempt 0) and sends the job to its queue as a fresh
message built from the record, so a replay with a new payload or without a
dead-letter queue works the same. The job's copy in the dead-letter queue is
then deleted by a sweep of that queue, in the background. A job still
``FAILED`` keeps its message in the queue, waiting for its backoff: SQS
replays dead and cancelled jobs only (``SqsProvider.replayable``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._records import JobRecords, Operations
from jobwire.gateway.providers.sqs._calls import MessageCalls
from jobwire.gateway.providers.sqs._errors import sqs_error
from jobwire.gateway.providers.sqs._sending import Sending

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

logger = logging.getLogger("jobwire.gateway.sqs")

REPLAYABLE = frozenset({JobState.DEAD, JobState.CANCELLED})
"""The states SQS replays (a failed job's message still waits in its queue)."""
#: Receive calls one sweep of the dead-letter queue makes at most, beyond one per ten jobs.
_SWEEP_SLACK = 20
#: Seconds a dead-letter message the sweep does not delete stays hidden from it.
_SWEEP_VISIBILITY = 30


class Redrive:
    """Replays on SQS: records first, then fresh messages, then the DLQ sweep."""

    def __init__(
        self,
        records: JobRecords,
        operations: Operations,
        calls: MessageCalls,
        client: Callable[[], SQSClient],
        sending: Sending,
        events: JobEvents,
        dead_letter_queue_url: str | None,
    ) -> None:
        self._records = records
        self._operations = operations
        self._calls = calls
        self._client = client
        self._sending = sending
        self._events = events
        self._dlq = dead_letter_queue_url
        self._tasks: set[asyncio.Task[None]] = set()

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Replay one dead or cancelled job; another comes back unchanged with False."""
        await self._records.flush()
        record = await self._records.get(job_id)
        if record is None:
            return None
        if record.state not in REPLAYABLE:
            return record, False
        stored = await self._store([record], time.time(), payload, max_retries)
        return record, bool(stored)

    async def replay_all(self, selector: JobSelector, request_id: str) -> int:
        """Replay every selected dead or cancelled job, once per request id."""
        if request_id:
            done = await self._operations.replayed_count(request_id)
            if done is not None:
                return done
        states = selector.states & REPLAYABLE
        jobs = await self._operations.selected(selector, states, time.time()) if states else []
        count = await self._store(jobs, time.time(), None, None, request_id)
        if count is None:  # the same request id, recorded meanwhile by another call
            return await self._operations.replayed_count(request_id) or 0
        for job in jobs:
            self._events.publish(job)
        return count

    async def _store(
        self,
        jobs: Sequence[JobRecord],
        now: float,
        payload: bytes | None,
        max_retries: int | None,
        request_id: str = "",
    ) -> int | None:
        before = [dataclasses.replace(job) for job in jobs]
        for job in jobs:
            job.replay(now, payload, max_retries)
        count = await self._operations.replay(
            [(job, was.state) for job, was in zip(jobs, before, strict=True)], request_id
        )
        if count is None or not jobs:
            return count
        try:
            await self._send(jobs, now)
        except BaseException:
            # Not sent: the jobs stay as they were, and the request id is
            # forgotten, so the same request replays them when retried. (A
            # message sent before the failure finds its job dead on receipt and
            # goes back to the dead-letter queue.)
            for old in before:
                self._records.save(old)
            await self._records.flush()
            if request_id:
                await self._operations.forget_request(request_id)
            raise
        self._sweep({job.id for job in jobs})
        return count

    async def _send(self, jobs: Sequence[JobRecord], now: float) -> None:
        failed = await self._sending.send([self._sending.outgoing(job, now) for job in jobs])
        if failed:
            out, error = failed[0]
            raise sqs_error(error, out.url)

    def _sweep(self, job_ids: set[str]) -> None:
        if self._dlq is None:
            return
        task = asyncio.create_task(self._sweep_dlq(self._dlq, job_ids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _sweep_dlq(self, url: str, job_ids: set[str]) -> None:
        """Delete the dead-letter copies of replayed jobs."""
        client = self._client()
        try:
            for _ in range(len(job_ids) // 10 + _SWEEP_SLACK):
                if not job_ids:
                    return
                response = await client.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=_SWEEP_VISIBILITY
                )
                messages = response.get("Messages", [])
                if not messages:
                    return
                entries: list[DeleteMessageBatchRequestEntryTypeDef] = []
                for n, message in enumerate(messages):
                    job_id = _job_id(message.get("Body", ""))
                    if job_id in job_ids:
                        job_ids.discard(job_id)
                        entries.append({"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]})
                if entries:
                    await client.delete_message_batch(QueueUrl=url, Entries=entries)
        except Exception as error:
            logger.warning("sweeping replayed jobs out of the dead-letter queue: %s", error)

    async def aclose(self) -> None:
        """Wait for the sweeps under way."""
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _job_id(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return ""
    return str(parsed.get("id", "")) if isinstance(parsed, dict) else ""
