"""The lease table of one gateway: who holds which lease, the credits, the timers.

The bottom layer of the lease state machine (:mod:`._leases` adds the
flows). It keeps every lease by consumer and by job id, the number of worker
streams on each queue, and the credits each consumer uses, counting expired
leases its worker has not answered for. It arms one timer per deadline: the
leases of one delivery frame end together and share one
(:class:`~._types.LeaseTimer`); an extended lease or a job timeout gets its
own. What a deadline does is the flows' business (``_on_deadline``).

It is also what the provider sees of the state machine
(:class:`~.base.ProviderHost`): which jobs are leased here, and ``lost`` for
a job the backend took back. Every method runs on the event loop and changes
the table without awaiting.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Generic

from jobwire.gateway._events import JobEvents
from jobwire.gateway.providers._types import (
    Consumer,
    H,
    Lease,
    LeaseTimer,
    Revocation,
    RevokeReason,
)
from jobwire.gateway.providers.base import QueueProvider


@dataclass(slots=True, eq=False)
class Holder(Generic[H]):
    """The leases of one consumer."""

    leases: dict[str, Lease[H]] = field(default_factory=dict)
    unanswered: set[str] = field(default_factory=set)
    """Expired leases the worker has not answered for: they keep their credit,
    so a worker that stopped answering is sent no more work."""


class LeaseTable(Generic[H]):
    """The leases of one gateway on top of a provider's storage; binds the provider to it.

    Args:
        provider: the storage.
        events: where lease transitions are published.
    """

    def __init__(self, provider: QueueProvider[H], events: JobEvents) -> None:
        self.provider = provider
        self.events = events
        self._holders: dict[Consumer, Holder[H]] = {}
        self._by_job: dict[str, Lease[H]] = {}
        self._workers: Counter[str] = Counter()
        provider.bind(self)

    # What providers may ask (ProviderHost) ------------------------------------

    def leased_job_ids(self) -> Collection[str]:
        """Ids of the jobs leased on this gateway now."""
        return self._by_job.keys()

    def lost(self, job_id: str, reason: RevokeReason, message: str) -> None:
        """The backend took a job leased here back: revoke the lease, record nothing."""
        lease = self._by_job.get(job_id)
        if lease is not None:
            self._forget(lease)
            self._revoke(lease, reason, message)

    # Consumers ---------------------------------------------------------------

    def connect(self, consumer: Consumer) -> None:
        """Register a consumer before its first ``receive``."""
        self._holders[consumer] = Holder()
        for name in consumer.queues:
            self._workers[name] += 1

    def free_credits(self, consumer: Consumer) -> int:
        """Credits of a connected, not draining consumer that its leases do not use now."""
        holder = self._holders.get(consumer)
        if holder is None or consumer.draining:
            return 0
        return max(0, consumer.credits - len(holder.leases) - len(holder.unanswered))

    def in_use(self, consumer: Consumer) -> int:
        """Credits the consumer uses: its leases and the expired ones it owes an answer for."""
        holder = self._holders[consumer]
        return len(holder.leases) + len(holder.unanswered)

    def consumers(self) -> Collection[Consumer]:
        """The consumers connected now."""
        return self._holders.keys()

    @property
    def leased(self) -> int:
        """Leases held on this gateway now."""
        return len(self._by_job)

    def _remove(self, consumer: Consumer) -> list[Lease[H]]:
        """Forget a consumer; return the leases it held, out of the table."""
        holder = self._holders.pop(consumer)
        for name in consumer.queues:
            self._workers[name] -= 1
        leases = list(holder.leases.values())
        for lease in leases:
            self._unindex(lease)
        holder.leases.clear()
        return leases

    # Timers ------------------------------------------------------------------

    def _arm(self, lease: Lease[H], now: float, loop: asyncio.AbstractEventLoop) -> None:
        """Give one lease a timer of its own, at its deadline."""
        if lease.timer is not None:
            lease.timer.release()
        self._arm_all([lease], lease.deadline - now, loop)

    def _arm_all(
        self, leases: list[Lease[H]], delay: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        """One timer for leases that end together, ``delay`` seconds from now."""
        timer = LeaseTimer(leases)
        timer.handle = loop.call_later(delay, self._on_timer, timer)
        for lease in leases:
            lease.timer = timer

    def _on_timer(self, timer: LeaseTimer) -> None:
        timer.handle = None
        for lease in timer.leases:
            if lease.timer is timer:
                lease.timer = None
                holder = self._holders.get(lease.consumer)
                if holder is not None and holder.leases.get(lease.id) is lease:
                    self._forget(lease)
                    self._on_deadline(lease, holder)

    def _on_deadline(self, lease: Lease[H], holder: Holder[H]) -> None:
        """A lease still held reached its deadline; it is out of the table already."""
        raise NotImplementedError

    def _stop_timers(self) -> None:
        """Stop every lease timer (at shutdown)."""
        for lease in self._by_job.values():
            if lease.timer is not None:
                lease.timer.release()
                lease.timer = None

    # Changes -----------------------------------------------------------------

    def _forget(self, lease: Lease[H]) -> None:
        """Take a lease out of the table."""
        holder = self._holders.get(lease.consumer)
        if holder is not None:
            holder.leases.pop(lease.id, None)
        self._unindex(lease)

    def _unindex(self, lease: Lease[H]) -> None:
        if lease.timer is not None:
            lease.timer.release()
            lease.timer = None
        if self._by_job.get(lease.job.id) is lease:
            del self._by_job[lease.job.id]

    def _revoke(self, lease: Lease[H], reason: RevokeReason, message: str) -> None:
        lease.consumer.on_revoke(
            Revocation(lease.id, lease.job, reason, message, lease.delivered_at)
        )
