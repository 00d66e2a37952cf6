"""Where the provider keeps things in Redis: the key layout, in one place.

Every key starts with ``{PREFIX}:`` (``key_prefix``, default ``jobwire``).
The braces are a Redis Cluster hash tag: all keys of a deployment fall in
one slot, as Lua scripts that touch many of them need. The Lua side of the
layout is described at the top of ``lua/lib.lua``; the scripts build the
same names from the prefix they are given.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key and channel names of one deployment (one ``key_prefix``)."""

    prefix: str
    """``{PREFIX}:``, passed to every script as ``ARGV[1]``."""

    @classmethod
    def of(cls, key_prefix: str) -> Keys:
        """The layout of ``key_prefix``."""
        return cls(f"{{{key_prefix}}}:")

    def job(self, job_id: str) -> str:
        """Hash of one job."""
        return f"{self.prefix}job:{job_id}"

    @property
    def jobs(self) -> str:
        """Sorted set of every stored job by creation order (``ListJobs``)."""
        return f"{self.prefix}jobs"

    @property
    def delayed(self) -> str:
        """Sorted set of scheduled and failed jobs by due time (ms)."""
        return f"{self.prefix}delayed"

    @property
    def seq(self) -> str:
        """Counter of creation and ready order; every script names it as its key."""
        return f"{self.prefix}seq"

    def dedup(self, key: str) -> str:
        """The id of the job holding deduplication key ``key``."""
        return f"{self.prefix}dedup:{key}"

    def request(self, request_id: str) -> str:
        """The id of the job an enqueue with ``request_id`` created."""
        return f"{self.prefix}req:{request_id}"

    @property
    def paused(self) -> str:
        """Set of the paused queues."""
        return f"{self.prefix}paused"

    def replays(self, request_id: str) -> str:
        """Hash of a ``RetryJobs`` request id: jobs replayed (``n``), whether finished."""
        return f"{self.prefix}replays:{request_id}"

    def workers(self, gateway: str) -> str:
        """Hash of the worker streams gateway ``gateway`` (its address) published."""
        return f"{self.prefix}workers:{gateway}"

    def drain(self, gateway: str) -> str:
        """Set of sessions of gateway ``gateway`` another gateway asked to drain."""
        return f"{self.prefix}drain:{gateway}"

    @property
    def worker_gateways(self) -> str:
        """Sorted set of gateway addresses by when they last published their streams."""
        return f"{self.prefix}workergateways"

    def alive(self, gateway: str) -> str:
        """Heartbeat of a gateway: exists while it lives (a TTL)."""
        return f"{self.prefix}alive:{gateway}"

    @property
    def gateways(self) -> str:
        """Set of the gateways that may hold leases."""
        return f"{self.prefix}gateways"

    def counts(self, queue: str) -> str:
        """Hash of a queue's jobs by state."""
        return f"{self.prefix}counts:{queue}"

    @property
    def limits(self) -> str:
        """Hash of every configured queue's limits (``QueueLimits.as_json``)."""
        return f"{self.prefix}limits"

    def flow(self, queue: str) -> str:
        """Hash of a flowing queue's limits, token bucket and rotation."""
        return f"{self.prefix}flow:{queue}"

    def lanes(self, queue: str) -> str:
        """Sorted set of a flowing queue's keys with ready jobs, in key order."""
        return f"{self.prefix}lanes:{queue}"

    def lane(self, queue: str, key: str) -> str:
        """Sorted set of the ready jobs of one concurrency key of a flowing queue."""
        return f"{self.prefix}lane:{queue}/{key}"

    def busy(self, queue: str) -> str:
        """Set of the concurrency keys of a flowing queue with jobs processing now."""
        return f"{self.prefix}running:{queue}"

    def running(self, queue: str, key: str) -> str:
        """Set of the jobs of one concurrency key of a flowing queue processing now."""
        return f"{self.prefix}run:{queue}/{key}"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel: a queue name, when jobs became ready in it."""
        return f"{self.prefix}wake"

    def cancel_channel(self, gateway: str) -> str:
        """Pub/sub channel of a gateway: ids of its leased jobs cancelled elsewhere."""
        return f"{self.prefix}cancel:{gateway}"
