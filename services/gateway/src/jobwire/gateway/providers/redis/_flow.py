"""Flow control in Redis: the limits every gateway reads, and why a job waits.

The claims themselves are Lua (``lua/lease.lua``, ``lease_flow``): a queue with
limits, or with jobs that carry a concurrency key, keeps its ready jobs in one
sorted set per key (a *lane*), the keys with ready jobs in one sorted set in
key order, and per key the set of its jobs processing. A claim reads the
queue's limits and token bucket (one hash per queue), takes the keys in turn
after the key served last, skips a key at its limit with one ``SCARD``, and
writes the bucket and the rotation's place back, all in the claim's script:
exact across gateways, and a key's backlog is never scanned. Whatever ends a
job's processing (``settle``, ``cancel``, ``purge``, ``unclaim``, a dead
gateway's leases ended by another) frees its key's slot in the same script
and publishes the queue's wake-up.

Here: storing limits (``limits.lua``), reading them back (``ListQueueConfigs``;
each gateway keeps what it read for :data:`FRESH` seconds), and the reads that
explain a held job (``GetJob``'s ``waiting_reason``, ``GetQueueStats``' held counts,
the key policies' ``key_jobs``).
"""

from __future__ import annotations

import json
import math
import time
from typing import cast

from redis.asyncio import Redis

from jobwire.gateway._limits import NO_LIMITS, QueueLimits
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._flow import (
    HeldCounts,
    Hold,
    held_counts,
    hold_of,
    tokens_at,
    whole,
)
from jobwire.gateway.providers.redis._errors import translated
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._reads import Reads
from jobwire.gateway.providers.redis._scripts import Scripts

FRESH = 0.5
"""Seconds a gateway keeps the limits it read (other gateways' changes show within it)."""
_PROCESSING = str(JobState.PROCESSING.value)
_BUSY_SCAN = 1000
"""Most keys with jobs processing a queue's held counts look at."""


class RedisFlow:
    """The provider's flow control reads and writes (the claims are in Lua)."""

    def __init__(self, client: Redis, scripts: Scripts, keys: Keys, reads: Reads) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys
        self._reads = reads
        self._limits: dict[str, QueueLimits] = {}
        self._read_at = -math.inf

    async def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Store ``queue``'s limits for every gateway; its waiting claims look again."""
        text = "" if limits.empty else json.dumps(limits.as_json())
        args: list[str | int] = [
            self._keys.prefix,
            queue,
            text,
            repr(time.time() * 1000),
            int(limits.limited),
        ]
        with translated():
            await self._scripts.limits(keys=[self._keys.seq], args=args)
        self._read_at = -math.inf

    async def stored(self) -> dict[str, QueueLimits]:
        """Every configured queue's limits (read at most every :data:`FRESH` seconds)."""
        if time.monotonic() - self._read_at >= FRESH:
            with translated():
                found = cast(dict[bytes, bytes], await self._client.hgetall(self._keys.limits))
            self._limits = {
                name.decode(): QueueLimits.from_json(json.loads(text))
                for name, text in found.items()
            }
            self._read_at = time.monotonic()
        return dict(self._limits)

    async def limits(self, queue: str) -> QueueLimits:
        """One queue's limits (``NO_LIMITS`` when never configured)."""
        with translated():
            text = await self._client.hget(self._keys.limits, queue)
        return NO_LIMITS if not text else QueueLimits.from_json(json.loads(text))

    async def hold(self, job: JobRecord) -> Hold | None:
        """The limit holding a pending job back now, if one does."""
        if job.state is not JobState.PENDING:
            return None
        limits = await self.limits(job.queue)
        if not limits.limited:
            return None
        key = job.concurrency_key
        with translated():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.scard(self._keys.running(job.queue, key))
                pipe.hget(self._keys.counts(job.queue), _PROCESSING)
                key_processing, processing = await pipe.execute()
            tokens = await self._tokens(job.queue, limits)
        return hold_of(
            limits,
            job.queue,
            key,
            int(key_processing) if key else 0,
            int(processing or 0),
            None if tokens is None else whole(tokens),
        )

    async def held(
        self, queue: str, limits: QueueLimits, pending: int, processing: int
    ) -> HeldCounts:
        """A queue's pending jobs held back, per limit (of at most 1,000 keys processing)."""
        per_key = limits.max_concurrency_per_key
        busy: dict[str, int] = {}
        with translated():
            if per_key:
                found = await self._client.srandmember(self._keys.busy(queue), _BUSY_SCAN)
                keys = sorted(k.decode() for k in cast(list[bytes], found))
                async with self._client.pipeline(transaction=False) as pipe:
                    for key in keys:
                        pipe.scard(self._keys.running(queue, key))
                        pipe.zcard(self._keys.lane(queue, key))
                    replies = await pipe.execute()
                for key, running, waiting in zip(keys, replies[::2], replies[1::2], strict=True):
                    if key and running >= per_key:
                        busy[key] = waiting
            tokens = await self._tokens(queue, limits)
        return held_counts(
            limits, pending, busy, processing, None if tokens is None else whole(tokens)
        )

    async def key_jobs(self, queue: str, key: str) -> list[JobRecord]:
        """A key's ready and processing jobs, oldest first."""
        with translated():
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.zrange(self._keys.lane(queue, key), 0, -1)
                pipe.smembers(self._keys.running(queue, key))
                ready, running = await pipe.execute()
            ids = sorted({job_id.decode() for job_id in (*ready, *running)})
            jobs = await self._reads.get_many(ids)
            # Oldest first: by creation order (the score in `jobs`).
            order = await self._client.zmscore(self._keys.jobs, ids) if ids else []
        created = {job_id: score or 0.0 for job_id, score in zip(ids, order, strict=True)}
        return sorted(jobs.values(), key=lambda job: created[job.id])

    async def _tokens(self, queue: str, limits: QueueLimits) -> float | None:
        """The tokens in ``queue``'s bucket now (None without a rate)."""
        if limits.rate is None:
            return None
        stored, refilled = await self._client.hmget(self._keys.flow(queue), ["tokens", "refilled"])
        if stored is None or refilled is None:
            return float(limits.rate.burst)
        return tokens_at(limits.rate, float(stored), float(refilled) / 1000, time.time())
