"""The redrive's last step on SQS: deleting replayed jobs' copies from the dead-letter queue.

A dead job's message was moved to the dead-letter queue (or deleted when none
is configured); a cancelled job's message is deleted. A replay
(:class:`~jobwire.gateway.providers._records.RecordsProvider`) makes the
record pending again and sends the job to its queue as a fresh message built
from the record, so a replay with a new payload or without a dead-letter
queue works the same. The job's copy in the dead-letter queue is then deleted
here, by a sweep of that queue in the background. A job still ``FAILED``
keeps its message in the queue, waiting for its backoff: SQS replays dead and
cancelled jobs only.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef

logger = logging.getLogger("jobwire.gateway.sqs")

#: Receive calls one sweep of the dead-letter queue makes at most, beyond one per ten jobs.
_SWEEP_SLACK = 20
#: Seconds a dead-letter message the sweep does not delete stays hidden from it.
_SWEEP_VISIBILITY = 30


class DeadLetterSweep:
    """Deletes the dead-letter copies of replayed jobs, in background tasks.

    Args:
        client: the open SQS client.
        dead_letter_queue_url: the dead-letter queue; None: there is nothing to sweep.
    """

    def __init__(self, client: Callable[[], SQSClient], dead_letter_queue_url: str | None) -> None:
        self._client = client
        self._dlq = dead_letter_queue_url
        self._tasks: set[asyncio.Task[None]] = set()

    def sweep(self, job_ids: set[str]) -> None:
        """Start deleting these jobs' copies from the dead-letter queue."""
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
