"""Job counts of a queue, as `stats()` returns them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from jobwire.client import _text
from jobwire.client._rich import Rich, frame
from jobwire.v1 import queue_service_pb2

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueStats(Rich):
    """Job counts of one queue.

    Counts of terminal states cover the jobs still in the gateway's history.
    """

    queue: str
    pending: int = 0
    scheduled: int = 0
    processing: int = 0
    completed: int = 0
    #: Jobs waiting for a retry.
    failed: int = 0
    dead: int = 0
    cancelled: int = 0
    #: How long the oldest pending job has waited; zero when none is pending.
    oldest_pending_age: timedelta = timedelta(0)
    #: Workers currently streaming from the queue.
    workers: int = 0
    #: Approximate (visible, in flight, delayed) messages the queue backend
    #: reports (SQS); None for the memory provider.
    backend: tuple[int, int, int] | None = None
    #: Types of pending jobs no worker connected to the gateway takes: such
    #: jobs wait until a worker that handles them connects.
    unserved_types: tuple[str, ...] = ()
    #: Whether deliveries are paused (`pause_queue`).
    paused: bool = False
    #: Pending jobs held back because their concurrency key is at its limit.
    held_by_key: int = 0
    #: Other pending jobs held back by the queue's `max_concurrency`.
    held_by_concurrency: int = 0
    #: Other pending jobs held back by the queue's rate limit.
    held_by_rate: int = 0
    #: Concurrency keys at their limit.
    busy_keys: int = 0

    @classmethod
    def from_proto(cls, proto: queue_service_pb2.QueueStats) -> QueueStats:
        """Converts a `jobwire.v1.QueueStats`."""
        return cls(
            queue=proto.queue,
            pending=proto.pending,
            scheduled=proto.scheduled,
            processing=proto.processing,
            completed=proto.completed,
            failed=proto.failed,
            dead=proto.dead,
            cancelled=proto.cancelled,
            oldest_pending_age=proto.oldest_pending_age.ToTimedelta(),
            workers=proto.workers,
            unserved_types=tuple(proto.unserved_types),
            paused=proto.paused,
            held_by_key=proto.held.by_key,
            held_by_concurrency=proto.held.by_concurrency,
            held_by_rate=proto.held.by_rate,
            busy_keys=proto.held.busy_keys,
            backend=(
                (proto.backend.visible, proto.backend.in_flight, proto.backend.delayed)
                if proto.HasField("backend")
                else None
            ),
        )

    def __repr__(self) -> str:
        counts = [
            f"{name}={getattr(self, name)}"
            for name in (*_text.STATE_ORDER, "workers")
            if getattr(self, name)
        ]
        if self.oldest_pending_age:
            counts.append(f"oldest_pending_age={_text.duration_text(self.oldest_pending_age)}")
        return f"QueueStats({', '.join([f'queue={self.queue!r}', *counts])})"


class QueueStatsList(list[QueueStats], Rich):
    """What `stats()` returns: a plain list of `QueueStats` that also displays as a table."""

    def to_pandas(self) -> pd.DataFrame:
        """Returns a data frame with one row per queue (needs the `pandas` extra).

        Raises:
            ImportError: pandas is not installed; `pip install './packages/jobwire-client[pandas]'`.
        """
        return frame(self)
