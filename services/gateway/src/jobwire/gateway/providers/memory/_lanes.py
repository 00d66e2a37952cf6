"""The memory provider's queues: ready jobs in one lane per concurrency key.

A queue keeps its jobs without a key in one lane and those of each key in a
lane of its own, each lane a deque per (type, priority). The lanes that may
run (ready jobs, and a free slot of their key) wait their turn in a rotation:
a claim takes from the lane at its head and puts it back at its tail, so
deliveries rotate across keys (fair dispatch) and a key's backlog is never
scanned. A queue that has never seen a key nor a limit is taken from by the
plain strict-FIFO path of :meth:`~._store.MemoryStore.take`. Held-back lanes
(their key at ``max_concurrency_per_key``) leave the rotation and come back
when a job of theirs stops processing.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobwire.gateway._limits import NO_LIMITS, QueueLimits
from jobwire.gateway._models import JobState
from jobwire.gateway.providers._flow import TokenBucket, budget
from jobwire.gateway.providers._types import Consumer

if TYPE_CHECKING:
    from jobwire.gateway.providers.memory._store import MemoryJob

Ready = dict[tuple[str, int], deque["MemoryJob"]]
"""Ready jobs by type and priority, in ready order. Cancelled and purged jobs
stay until popped and are skipped then."""


@dataclass(slots=True, eq=False)
class Lane:
    """The ready and processing jobs of one concurrency key ("" for jobs without one)."""

    key: str
    ready: Ready = field(default_factory=dict)
    running: dict[str, MemoryJob] = field(default_factory=dict)
    """The key's jobs processing now, oldest first (keyed lanes only)."""
    pending: int = 0
    """The key's ready jobs still pending (keyed lanes only)."""
    queued: bool = False
    """Whether the lane is in its queue's rotation (then exactly once)."""
    served: int = 0
    """Jobs taken in the lane's current turn (a key's weight is its turn's length)."""

    def has_ready(self) -> bool:
        """Whether a ready entry is left (it may be a cancelled job, skipped when popped)."""
        return any(self.ready.values())

    def pending_jobs(self) -> Iterator[MemoryJob]:
        """The lane's pending jobs, in no particular order."""
        for ready in self.ready.values():
            for job in ready:
                if job.state is JobState.PENDING:
                    yield job


@dataclass(slots=True)
class MemoryQueue:
    """One queue: its lanes, the claims waiting on it, its counts by state, its limits."""

    plain: Lane = field(default_factory=lambda: Lane(""))
    lanes: dict[str, Lane] = field(default_factory=dict)
    """The lanes of concurrency keys, created with a key's first ready job."""
    rotation: deque[Lane] = field(default_factory=deque)
    waiters: dict[asyncio.Future[None], Consumer] = field(default_factory=dict)
    counts: Counter[JobState] = field(default_factory=Counter)
    limits: QueueLimits = NO_LIMITS
    bucket: TokenBucket | None = None
    out_of_tokens: bool = False
    """Whether the last claim found the rate's bucket empty: then the next token, not
    an insert or a freed slot, is what lets a waiting claim go on."""

    @property
    def ready(self) -> Ready:
        """The ready jobs without a concurrency key."""
        return self.plain.ready

    @property
    def flows(self) -> bool:
        """Whether claims go through the lanes: the queue has keys or limits."""
        return bool(self.lanes) or self.limits.limited

    def runnable(self, lane: Lane) -> bool:
        """Whether the lane's key has a free slot (always, for jobs without a key)."""
        limit = self.limits.max_concurrency_per_key
        return not (lane.key and limit and len(lane.running) >= limit)

    def enqueue(self, lane: Lane) -> None:
        """Put the lane at the tail of the rotation, unless it is there."""
        if not lane.queued:
            lane.queued = True
            self.rotation.append(lane)

    def lane(self, key: str) -> Lane:
        """The lane of ``key``, created when first named."""
        if not key:
            return self.plain
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(key)
        return lane

    def retire(self, lane: Lane) -> None:
        """Forget a keyed lane with nothing ready nor processing (its key comes back anew)."""
        if lane.key and not lane.queued and not lane.running and not lane.has_ready():
            self.lanes.pop(lane.key, None)

    def configure(self, limits: QueueLimits) -> None:
        """Take new limits; the lanes they free join the rotation."""
        self.limits = limits
        if limits.rate is None:
            self.bucket = None
        elif self.bucket is None:
            self.bucket = TokenBucket(limits.rate)
        else:
            self.bucket.retune(limits.rate)
        for lane in (self.plain, *self.lanes.values()):
            if lane.has_ready() and self.runnable(lane):
                self.enqueue(lane)

    def rate_wait(self) -> float | None:
        """Seconds until the rate admits a job this queue holds ready; None if it is not why."""
        if self.bucket is None or not self.rotation or not self.out_of_tokens:
            return None
        # 0 when a token came between the claim and now: the claim goes again at once.
        return self.bucket.wait()

    def take(self, consumer: Consumer, max_jobs: int, taken: list[MemoryJob]) -> None:
        """Append to ``taken`` up to ``max_jobs`` jobs the limits admit, rotating across lanes."""
        limits = self.limits
        tokens = self.bucket.available() if self.bucket is not None else None
        self.out_of_tokens = tokens == 0
        room = min(max_jobs, budget(limits, self.counts[JobState.PROCESSING], tokens))
        if limits.fifo_across_keys:
            count = self._take_oldest(consumer, room, taken)
            if count and self.bucket is not None:
                self.bucket.take(count)
            return
        rotation = self.rotation
        skipped: list[Lane] = []  # lanes of types this consumer does not take
        count = 0
        while rotation and count < room:
            lane = rotation.popleft()
            lane.queued = False
            turn = limits.weight(lane.key) if lane.key else 1
            got = 0
            while lane.served < turn and count < room and self.runnable(lane):
                job = _pop_best(lane, consumer)
                if job is None:
                    break
                taken.append(job)
                if lane.key:
                    lane.running[job.id] = job
                    lane.pending -= 1
                lane.served += 1
                got += 1
                count += 1
            if not lane.has_ready() or not self.runnable(lane):
                # Back in the rotation with a new job or a free slot of its key.
                lane.served = 0
                self.retire(lane)
            elif lane.served >= turn:
                lane.served = 0
                self.enqueue(lane)
            elif got:  # the claim is full mid-turn: the next one goes on with it
                lane.queued = True
                rotation.appendleft(lane)
            else:
                skipped.append(lane)
        for lane in reversed(skipped):  # their turn is kept for the next consumer
            lane.queued = True
            rotation.appendleft(lane)
        if count and self.bucket is not None:
            self.bucket.take(count)

    def _take_oldest(self, consumer: Consumer, room: float, taken: list[MemoryJob]) -> int:
        """Fair dispatch off: take the oldest ready jobs across the lanes that may run."""
        count = 0
        while count < room:
            best: tuple[tuple[int, int], Lane, deque[MemoryJob]] | None = None
            for lane in self.rotation:
                if not self.runnable(lane):
                    continue
                for (job_type, _), ready in lane.ready.items():
                    while ready and ready[0].state is not JobState.PENDING:
                        ready.popleft()  # cancelled or purged
                    if ready and consumer.accepts(job_type):
                        order = (-ready[0].priority, ready[0].ready_order)
                        if best is None or order < best[0]:
                            best = (order, lane, ready)
            if best is None:
                break
            _, lane, ready = best
            job = ready.popleft()
            taken.append(job)
            if lane.key:
                lane.running[job.id] = job
                lane.pending -= 1
            count += 1
        # The rotation keeps the lanes that may still run; a key at its limit
        # comes back when a job of it stops processing.
        lanes = list(self.rotation)
        self.rotation.clear()
        for lane in lanes:
            lane.queued = False
            if lane.has_ready() and self.runnable(lane):
                self.enqueue(lane)
            else:
                self.retire(lane)
        return count

    def release(self, job: MemoryJob) -> bool:
        """A job of this queue stopped processing; return whether claims may take more now."""
        key = job.concurrency_key
        lane = self.lanes.get(key) if key else None
        if lane is not None and lane.running.pop(job.id, None) is not None:
            if lane.has_ready() and self.runnable(lane):
                self.enqueue(lane)
                return True
            self.retire(lane)
        return bool(self.limits.max_concurrency) and bool(self.rotation)


def _pop_best(lane: Lane, consumer: Consumer) -> MemoryJob | None:
    """Pop the lane's highest-priority, oldest pending job the consumer takes."""
    while True:
        heads = [
            ready
            for (job_type, _), ready in lane.ready.items()
            if ready and consumer.accepts(job_type)
        ]
        if not heads:
            return None
        ready = (
            min(heads, key=lambda r: (-r[0].priority, r[0].ready_order))
            if len(heads) > 1
            else heads[0]
        )
        job = ready.popleft()
        if job.state is JobState.PENDING:
            return job
