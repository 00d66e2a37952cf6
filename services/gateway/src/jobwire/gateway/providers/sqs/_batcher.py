"""Single SQS operations coalesced into batch calls of up to 10, per queue URL."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from jobwire.gateway.providers.sqs._errors import EntryFailed, sqs_error

BATCH = 10
"""Entries per SQS batch call, and messages per ``ReceiveMessage``."""
_CALLS_PER_QUEUE = 8  # batch calls in flight per queue and kind


class Batcher:
    """Coalesces single SQS operations into batch calls of up to 10, per queue URL.

    Operations wait only while a previous call on their queue is in flight,
    so an idle gateway sends each at once and a busy one fills batches.
    """

    def __init__(
        self,
        call: Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, BaseException | None]]],
        *,
        max_bytes: int = 0,
    ) -> None:
        self._call = call
        self._max_bytes = max_bytes
        self._lanes: dict[str, deque[tuple[dict[str, Any], int, asyncio.Future[None]]]] = {}
        self._running: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, url: str, entry: dict[str, Any], size: int = 0) -> asyncio.Future[None]:
        """Queue one entry; the future ends when SQS answered for it."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lanes.setdefault(url, deque()).append((entry, size, future))
        if self._running[url] < _CALLS_PER_QUEUE:
            self._running[url] += 1
            task = asyncio.create_task(self._pump(url))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return future

    async def _pump(self, url: str) -> None:
        lane = self._lanes[url]
        try:
            while lane:
                chunk = [lane.popleft()]
                total = chunk[0][1]
                while lane and len(chunk) < BATCH:
                    if self._max_bytes and total + lane[0][1] > self._max_bytes:
                        break
                    total += lane[0][1]
                    chunk.append(lane.popleft())
                entries = [{**entry, "Id": str(i)} for i, (entry, _, _) in enumerate(chunk)]
                try:
                    outcomes = await self._call(url, entries)
                except Exception as error:
                    failure = sqs_error(error, url)
                    for _, _, future in chunk:
                        if not future.done():
                            future.set_exception(failure)
                    continue
                for i, (_, _, future) in enumerate(chunk):
                    outcome = outcomes.get(str(i))
                    if future.done():
                        continue
                    if outcome is None:
                        future.set_result(None)
                    else:
                        future.set_exception(outcome)
        finally:
            self._running[url] -= 1

    async def drain(self) -> None:
        """Wait for every call in flight."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def batch_outcomes(response: Any) -> dict[str, BaseException | None]:
    outcomes: dict[str, BaseException | None] = {
        entry["Id"]: None for entry in response.get("Successful", [])
    }
    for entry in response.get("Failed", []):
        outcomes[entry["Id"]] = EntryFailed(
            entry["Code"], entry.get("Message", ""), sender_fault=entry["SenderFault"]
        )
    return outcomes
