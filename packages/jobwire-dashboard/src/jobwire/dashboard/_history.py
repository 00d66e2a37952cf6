"""Throughput and depth over the last hour, kept per minute in a bounded ring buffer.

The gateway reports counts, not events, so rates come from the difference of
two samples of `GetQueueStats`: enqueued is the growth of all of a queue's
jobs, completed the growth of completed ones, failed the growth of failed plus
dead ones. A provider that forgets finished jobs (the memory provider keeps
`max_history` of them) makes a minute's figures low, never negative.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from jobwire.client import QueueStats

MINUTES = 60


@dataclass(frozen=True)
class Minute:
    """What happened in one minute, over every queue."""

    start: datetime
    enqueued: int = 0
    completed: int = 0
    failed: int = 0
    #: Jobs not finished (pending, scheduled, processing, waiting for a retry) at its last sample.
    depth: int = 0


def _total(stats: QueueStats) -> int:
    return (
        stats.pending
        + stats.scheduled
        + stats.processing
        + stats.completed
        + stats.failed
        + stats.dead
        + stats.cancelled
    )


def _depth(stats: QueueStats) -> int:
    return stats.pending + stats.scheduled + stats.processing + stats.failed


class History:
    """The last `minutes` minutes of samples, oldest first; older ones are dropped."""

    def __init__(self, minutes: int = MINUTES) -> None:
        self._minutes: deque[Minute] = deque(maxlen=minutes)
        self._last: Mapping[str, QueueStats] | None = None

    def __len__(self) -> int:
        return len(self._minutes)

    def record(self, now: datetime, stats: Iterable[QueueStats]) -> None:
        """Adds one sample of every queue's counts taken at `now`."""
        current = {queue.queue: queue for queue in stats}
        start = now.replace(second=0, microsecond=0)
        if not self._minutes or self._minutes[-1].start != start:
            self._minutes.append(Minute(start))
        bucket = self._minutes[-1]
        enqueued = completed = failed = 0
        if self._last is not None:
            zero = QueueStats(queue="")
            for name, queue in current.items():
                before = self._last.get(name, zero)
                enqueued += max(0, _total(queue) - _total(before))
                completed += max(0, queue.completed - before.completed)
                failed += max(0, queue.failed + queue.dead - before.failed - before.dead)
        self._minutes[-1] = replace(
            bucket,
            enqueued=bucket.enqueued + enqueued,
            completed=bucket.completed + completed,
            failed=bucket.failed + failed,
            depth=sum(map(_depth, current.values())),
        )
        self._last = current

    def window(self, now: datetime) -> list[Minute]:
        """One `Minute` for each of the last `minutes` minutes up to `now`, gaps as zeros."""
        size = self._minutes.maxlen or MINUTES
        end = now.replace(second=0, microsecond=0)
        known = {minute.start: minute for minute in self._minutes}
        starts = [end - timedelta(minutes=offset) for offset in range(size - 1, -1, -1)]
        return [known.get(start, Minute(start)) for start in starts]
