"""Jobs handed to a parked stream by the insert that stores them (PostgreSQL).

A stream of this gateway that found nothing ready parks (:mod:`._claim`)
and, while it waits, offers to take jobs. An enqueue of jobs it can take
(due now, of its queues and types, without a concurrency key, on a queue
without flow control, and no wake-up since the stream looked) writes them
already leased to it, in the insert's own statement, and hands them over at
commit: the claim a wake-up would run (about 0.9 ms a job here, on the path
from enqueue to handler) is not made. The statement leaves a job waiting
when its queue is paused; a stream that left before the commit gets
nothing, and its jobs are put back as a claim's are.

Nothing jumps the queue: the stream found no ready job at the generations
it parked on, and an offer is taken only while they are unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING

from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._types import Consumer
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._rows import insert_row
from jobwire.gateway.providers.sql._wake import Wakeups

if TYPE_CHECKING:  # asyncpg is there only with the postgres extra
    from jobwire.gateway.providers.sql._direct import Direct


@dataclasses.dataclass(eq=False)
class Offer:
    """A parked stream's offer to take up to ``room`` jobs until ``until``."""

    consumer: Consumer
    room: int
    seen: tuple[int, ...]
    until: float
    woken: asyncio.Future[None] = dataclasses.field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    """What the stream parks on: a wake-up, or an insert taking the offer."""
    taken: asyncio.Future[list[JobRecord]] | None = None
    """Set once an insert took the offer: its jobs, at the insert's commit."""


@dataclasses.dataclass
class Handing:
    """The jobs of one insert that go to parked streams, by the offer taking them."""

    by_offer: dict[Offer, list[JobRecord]] = dataclasses.field(default_factory=dict)

    def leased(self) -> dict[str, JobRecord]:
        """The processing record of each job handed, by id."""
        return {job.id: job for jobs in self.by_offer.values() for job in jobs}


class Handover:
    """The offers of this gateway's parked streams, oldest first.

    Args:
        wakeups: the generations an offer stays good for.
        flowing: the queues under flow control (claimed through their lanes, never handed).
    """

    def __init__(self, wakeups: Wakeups, flowing: Callable[[], Collection[str]]) -> None:
        self._wakeups = wakeups
        self._flowing = flowing
        self._offers: dict[Offer, None] = {}  # an ordered set: the longest parked first

    def open(self, consumer: Consumer, room: int, seen: tuple[int, ...], until: float) -> Offer:
        """Offer to take jobs while ``consumer`` parks."""
        offer = Offer(consumer, room, seen, until)
        self._offers[offer] = None
        return offer

    def withdraw(self, offer: Offer) -> asyncio.Future[list[JobRecord]] | None:
        """End the offer; return its jobs to come when an insert already took it."""
        self._offers.pop(offer, None)
        return offer.taken

    async def insert(
        self, sql: Sql, direct: Direct, fresh: list[tuple[JobRecord, str]], now: float
    ) -> set[str]:
        """Store new jobs (record, request id) in one statement, handing what parked streams take.

        Returns the queues of the jobs stored waiting (those to wake claims for).
        """
        handing = self._reserve([record for record, _ in fresh], now)
        leased = handing.leased()
        rows = [
            insert_row(record, request_id)
            if record.id not in leased
            else insert_row(leased[record.id], request_id, sql.gateway_id)
            for record, request_id in fresh
        ]
        waiting = {record.queue for record, _ in fresh if record.id not in leased}
        handed: set[str] = set()
        try:
            payload = sql.ready_payload(waiting) if waiting else None
            handed = await direct.insert(rows, sql.ready_channel, payload)
        finally:
            # Nothing handed when the insert failed: those streams claim as usual.
            self._settle(handing, handed)
        return waiting

    def _reserve(self, records: Sequence[JobRecord], now: float) -> Handing:
        """Take offers for the new ``records`` they can run now, best claim order first."""
        handing = Handing()
        if not self._offers:
            return handing
        flowing = self._flowing()
        ready = sorted(
            (
                r
                for r in records
                if r.state is JobState.PENDING and not r.concurrency_key and r.queue not in flowing
            ),
            key=lambda r: -r.priority,  # sorted() is stable: the batch's order within a priority
        )
        for record in ready:
            offer = self._taker(record, now)
            if offer is None:
                continue
            jobs = handing.by_offer.setdefault(offer, [])
            jobs.append(
                dataclasses.replace(
                    record,
                    state=JobState.PROCESSING,
                    attempt=record.attempt + 1,
                    worker_id=offer.consumer.worker_id,
                    update_time=now,
                    schedule_time=None,
                )
            )
            if len(jobs) == offer.room:
                del self._offers[offer]
        for offer in handing.by_offer:
            self._offers.pop(offer, None)
            offer.taken = asyncio.get_running_loop().create_future()
            if not offer.woken.done():
                offer.woken.set_result(None)
        return handing

    def _taker(self, record: JobRecord, now: float) -> Offer | None:
        for offer in self._offers:
            consumer = offer.consumer
            if (
                record.queue in consumer.queues
                and (not consumer.job_types or record.type in consumer.job_types)
                and now < offer.until
                and self._wakeups.generation(consumer.queues) == offer.seen
            ):
                return offer
        return None

    @staticmethod
    def _settle(handing: Handing, handed: Collection[str]) -> None:
        """Give each offer its jobs the insert wrote leased (``handed``: their ids)."""
        for offer, jobs in handing.by_offer.items():
            if offer.taken is not None and not offer.taken.done():
                offer.taken.set_result([job for job in jobs if job.id in handed])
