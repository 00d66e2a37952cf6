"""The SQS calls the provider makes on messages, batched where SQS allows.

Sends, deletes and visibility changes go through one :class:`Batcher` each.
Calls that follow a recorded change (delete a finished job's message) are
fire-and-forget: a failure is logged, and the message comes back when its
visibility ends, to be settled then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers.sqs._batcher import BATCH, Batcher, batch_outcomes
from jobwire.gateway.providers.sqs._errors import GONE, EntryFailed
from jobwire.gateway.providers.sqs._messages import Message

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

logger = logging.getLogger("jobwire.gateway.sqs")


class MessageCalls:
    """SQS calls on messages, through the client ``client()`` returns.

    Args:
        client: returns the open SQS client.
        dead_letter_queue_url: where dead jobs' messages go; None deletes them.
        max_message_bytes: the largest send batch SQS takes.
        wait_time: ``WaitTimeSeconds`` of each receive call.
    """

    def __init__(
        self,
        client: Callable[[], SQSClient],
        *,
        dead_letter_queue_url: str | None,
        max_message_bytes: int,
        wait_time: int,
    ) -> None:
        self._client = client
        self._dlq = dead_letter_queue_url
        self.wait_time = wait_time
        self.sends = Batcher(self._send_batch, max_bytes=max_message_bytes)
        self._deletes = Batcher(self._delete_batch)
        self._visibility = Batcher(self._visibility_batch)
        self._tasks: set[asyncio.Task[None]] = set()

    async def receive(self, url: str, count: int, visibility: int) -> Sequence[MessageTypeDef]:
        """One long-polling ``ReceiveMessage`` call."""
        response = await self._client().receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(count, BATCH),
            WaitTimeSeconds=self.wait_time,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        return response.get("Messages", [])

    def change_visibility(self, message: Message, seconds: int) -> asyncio.Future[None]:
        """Change a message's visibility; the future ends with SQS's answer."""
        entry = {"ReceiptHandle": message.receipt_handle, "VisibilityTimeout": seconds}
        return self._visibility.submit(message.url, entry)

    def set_visibility(self, message: Message, seconds: int) -> None:
        """Change a message's visibility, not waiting for the answer."""
        self._watch(self.change_visibility(message, seconds), "visibility change", message)

    def delete(self, message: Message) -> None:
        """Delete a message, not waiting for the answer."""
        future = self._deletes.submit(message.url, {"ReceiptHandle": message.receipt_handle})
        self._watch(future, "delete", message)

    def settle_finished(self, record: JobRecord, message: Message) -> None:
        """Remove the message of a finished job (SQS still had it, e.g. after a cancel)."""
        if record.state is JobState.DEAD:
            self.dead_letter(message)
        else:
            self.delete(message)

    def dead_letter(self, message: Message) -> None:
        """Move a dead job's message to the dead-letter queue (delete it when none)."""
        if self._dlq is None:
            self.delete(message)
            return
        task = asyncio.create_task(self._move_to_dlq(message, self._dlq))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def quarantine(self, message: Message, error: ValueError) -> None:
        """Keep a message that is no jobwire job out of the way."""
        if self._dlq is not None:
            logger.error(
                "queue %r: message %s moved to the DLQ: %s",
                message.queue,
                message.message_id,
                error,
            )
            self.dead_letter(message)
        else:
            logger.error(
                "queue %r: message %s ignored: %s (configure dead_letter_queue_url to move "
                "such messages away)",
                message.queue,
                message.message_id,
                error,
            )

    async def drain(self) -> None:
        """Wait for every call in flight."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for batcher in (self.sends, self._deletes, self._visibility):
            await batcher.drain()

    async def _move_to_dlq(self, message: Message, dlq: str) -> None:
        entry: dict[str, Any] = {"MessageBody": message.body}
        if message.attributes:
            entry["MessageAttributes"] = {
                name: {
                    k: v
                    for k, v in value.items()
                    if k in ("DataType", "StringValue", "BinaryValue")
                }
                for name, value in message.attributes.items()
            }
        if dlq.endswith(".fifo"):
            entry["MessageGroupId"] = entry["MessageDeduplicationId"] = message.message_id
        try:
            await self.sends.submit(dlq, entry)
        except Exception as error:
            # The message stays; when SQS shows it again, its record is dead
            # and the move is tried again.
            logger.warning(
                "moving a message of queue %r to the DLQ failed: %s", message.queue, error
            )
            return
        self.delete(message)

    def _watch(self, future: asyncio.Future[None], what: str, message: Message) -> None:
        def done(future: asyncio.Future[None]) -> None:
            error = future.exception()
            if isinstance(error, EntryFailed) and error.code in GONE:
                # Deleted already, or received again elsewhere: nothing to do here.
                logger.debug("SQS %s on queue %r skipped: %s", what, message.queue, error)
            elif error is not None:
                # The message comes back when its visibility ends; a finished
                # job's message is then deleted on receipt.
                logger.warning("SQS %s on queue %r failed: %s", what, message.queue, error)

        future.add_done_callback(done)

    async def _send_batch(
        self, url: str, entries: list[dict[str, Any]]
    ) -> dict[str, BaseException | None]:
        response = await self._client().send_message_batch(
            QueueUrl=url, Entries=cast("list[SendMessageBatchRequestEntryTypeDef]", entries)
        )
        return batch_outcomes(response)

    async def _delete_batch(
        self, url: str, entries: list[dict[str, Any]]
    ) -> dict[str, BaseException | None]:
        response = await self._client().delete_message_batch(
            QueueUrl=url, Entries=cast("list[DeleteMessageBatchRequestEntryTypeDef]", entries)
        )
        return batch_outcomes(response)

    async def _visibility_batch(
        self, url: str, entries: list[dict[str, Any]]
    ) -> dict[str, BaseException | None]:
        response = await self._client().change_message_visibility_batch(
            QueueUrl=url,
            Entries=cast("list[ChangeMessageVisibilityBatchRequestEntryTypeDef]", entries),
        )
        return batch_outcomes(response)
