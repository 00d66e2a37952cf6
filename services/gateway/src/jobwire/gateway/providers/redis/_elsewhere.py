"""What other gateways did, as this gateway learns of it.

* A job leased here was cancelled through another gateway: its cancel
  channel says so, and the lease is revoked at once (``host.lost``).
* ``reap.lua`` took leases back (from a gateway whose heartbeat lapsed, or
  whose lease ended without an ending): each ends as a lost attempt, by the
  same rule as a dropped stream (``RetryPolicy.after_loss``).
* Jobs this gateway's ``WatchJob`` streams watch may change anywhere: they
  are read again at each upkeep tick and when promoted.
* This gateway's own heartbeat had lapsed (it could not reach Redis for
  ``gateway_timeout``): the leases another gateway took since are revoked here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from typing import Any

from redis.asyncio import Redis

from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import AttemptEnd, Failure, JobRecord
from jobwire.gateway.providers._retry import RetryPolicy
from jobwire.gateway.providers._types import RevokeReason
from jobwire.gateway.providers.base import ProviderHost
from jobwire.gateway.providers.redis import _codec as codec
from jobwire.gateway.providers.redis._keys import Keys

logger = logging.getLogger("jobwire.gateway.redis")

Record = Callable[[Sequence[tuple[JobRecord, int, AttemptEnd]]], Awaitable[list[bool]]]
"""Records endings of leases of this gateway (``settle.lua``); True where applied."""
GetMany = Callable[[Iterable[str]], Awaitable[dict[str, JobRecord]]]


class Elsewhere:
    """How a provider takes in the changes other gateways made.

    Args:
        client: the provider's client.
        keys: the key layout.
        gateway: this gateway's id.
        events: where changes are published to ``WatchJob`` streams.
        host: the lease state machine driving the provider (bound after construction).
        record: records endings of this gateway's leases.
        get_many: reads jobs by id.
        spawn: runs a coroutine in the background, its failure logged.
    """

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        gateway: str,
        events: JobEvents,
        host: Callable[[], ProviderHost],
        record: Record,
        get_many: GetMany,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._client = client
        self._keys = keys
        self._gateway = gateway
        self._events = events
        self._host = host
        self._record = record
        self._get_many = get_many
        self._spawn = spawn

    def cancelled(self, job_id: str) -> None:
        """A job leased here was cancelled through another gateway."""
        self._host().lost(job_id, RevokeReason.CANCELLED, "job cancelled")
        self._spawn(self.refresh([job_id.encode()]))

    async def take_back(self, replies: Sequence[Any]) -> None:
        """End the leases ``reap.lua`` took back, each as a lost attempt."""
        now = time.time()
        held = self._host().leased_job_ids()
        items = []
        for gateway, values in zip(replies[::2], replies[1::2], strict=True):
            job = codec.job_of(values)
            if gateway.decode() == self._gateway:
                if job.id in held:
                    continue  # still leased here: its own timer ends it
                message = "lease ended while Redis was unreachable"
                kind = "LEASE_EXPIRED"
            else:
                message = f"gateway {gateway.decode()} stopped during the attempt"
                kind = "GATEWAY_LOST"
            failure = Failure(message, kind, attempt=job.attempt)
            items.append((job, job.attempt, RetryPolicy.after_loss(job, failure, now)))
        if items:
            logger.warning("took back %d leases no live gateway would end", len(items))
            applied = await self._record(items)
            for (job, _, _), ok in zip(items, applied, strict=True):
                if ok:
                    self._events.publish(job)

    async def refresh(self, job_ids: Sequence[bytes]) -> None:
        """Tell this gateway's watchers of ``job_ids`` (all watched jobs if empty) as stored."""
        watched = self._events.watched()
        if not watched:
            return
        wanted = [i for i in (j.decode() for j in job_ids) if i in watched] if job_ids else watched
        for job in (await self._get_many(list(wanted))).values():
            self._events.publish_if_newer(job)

    async def reconcile(self) -> None:
        """This gateway's heartbeat had lapsed: revoke the leases another gateway took back."""
        host = self._host()
        held = list(host.leased_job_ids())
        if not held:
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id in held:
                pipe.hmget(self._keys.job(job_id), ["gw"])
            owners = await pipe.execute()
        for job_id, (owner,) in zip(held, owners, strict=True):
            if owner != self._gateway.encode():
                host.lost(
                    job_id,
                    RevokeReason.EXPIRED,
                    "taken back by another gateway while this one could not reach Redis",
                )
        logger.warning("this gateway's Redis heartbeat had lapsed; its leases were checked")
