"""Jobs into SQS: a record first, then its message, built and checked here.

A job's message carries the record (:mod:`._codec`), delayed by whole
seconds rounded up (never delivered early) up to SQS's 15 minutes; FIFO
queues and longer delays are refused, as are messages over SQS's size limit,
before anything is stored. Enqueues record the jobs, then send the fresh
ones' messages in batches; the records of messages SQS refused are deleted
again, so a retry with the same request ids enqueues exactly those. Replays
(``RecordsProvider._publish_replayed``) send through the same path.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence

from jobwire.gateway._errors import PayloadTooLargeError
from jobwire.gateway._models import JobRecord, NewJob
from jobwire.gateway.providers._records import JobRecords
from jobwire.gateway.providers.sqs._calls import MessageCalls
from jobwire.gateway.providers.sqs._codec import MAX_DELAY, Outgoing, encode
from jobwire.gateway.providers.sqs._errors import (
    QueueNotConfiguredError,
    SqsRefusedError,
    sqs_error,
)


class Sending:
    """Messages of new and replayed jobs.

    Args:
        records: the job records.
        calls: the SQS calls (sends are batched).
        urls: the SQS queue URL of each jobwire queue.
        max_message_bytes: the largest message SQS takes.
    """

    def __init__(
        self,
        records: JobRecords,
        calls: MessageCalls,
        urls: Mapping[str, str],
        max_message_bytes: int,
    ) -> None:
        self._records = records
        self._calls = calls
        self._urls = urls
        self._max_message_bytes = max_message_bytes

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Record jobs, then send their messages; forget the records of those not sent."""
        now = time.time()
        candidates: list[tuple[NewJob, JobRecord]] = []
        outgoing: list[Outgoing] = []
        for new in jobs:
            record = JobRecord.create(new, now)
            outgoing.append(self.outgoing(record, now))
            candidates.append((new, record))
        results = await self._records.insert(candidates, now)
        fresh = [out for (_, dup), out in zip(results, outgoing, strict=True) if not dup]
        if fresh:
            failed = await self.send(fresh)
            if failed:
                # Forget the jobs that were not sent, so a retry with the same
                # request ids enqueues exactly those.
                await self._records.delete(out.job_id for out, _ in failed)
                out, error = failed[0]
                raise sqs_error(error, out.url)
        return results

    async def send(self, outgoing: Sequence[Outgoing]) -> list[tuple[Outgoing, BaseException]]:
        """Send messages, in batches; return those SQS refused, each with why."""
        sent = await asyncio.gather(
            *(self._calls.sends.submit(out.url, out.entry, out.size) for out in outgoing),
            return_exceptions=True,
        )
        return [(out, e) for out, e in zip(outgoing, sent, strict=True) if e is not None]

    def outgoing(self, record: JobRecord, now: float) -> Outgoing:
        """The message of a job, refused when SQS cannot hold it (delay, FIFO, size)."""
        url = self.url(record.queue)
        delay = 0
        if record.schedule_time is not None and record.schedule_time > now:
            ahead = record.schedule_time - now
            if url.endswith(".fifo"):
                raise SqsRefusedError(
                    f"queue {record.queue!r} is an SQS FIFO queue, which has no per-message "
                    "delay; set [scheduler] delay_threshold = 0 so the scheduler holds "
                    "every delayed job"
                )
            if ahead > MAX_DELAY + 1:
                raise SqsRefusedError(
                    f"SQS delays jobs by at most {MAX_DELAY}s; the scheduler must hold "
                    "longer ones ([scheduler] enabled = true, delay_threshold at most 15m)"
                )
            # Whole seconds, rounded up: never delivered early.
            delay = min(MAX_DELAY, math.ceil(ahead))
        out = encode(record, url, delay)
        limit = self._max_message_bytes
        if out.size > limit:
            raise PayloadTooLargeError(
                "payload",
                f"is {len(record.payload)} bytes; as an SQS message (base64 body and "
                f"attributes) the job takes {out.size} bytes, over SQS's limit of {limit} bytes",
            )
        return out

    def url(self, queue: str) -> str:
        """The SQS queue URL of a jobwire queue.

        Raises:
            QueueNotConfiguredError: ``provider.queue_urls`` has none for it.
        """
        try:
            return self._urls[queue]
        except KeyError:
            names = ", ".join(sorted(self._urls))
            raise QueueNotConfiguredError(
                f"queue {queue!r} has no SQS queue; add it to provider.queue_urls "
                f"(configured: {names})",
                queue=queue,
            ) from None
