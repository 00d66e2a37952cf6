"""Redis provider (``type = "redis"``), through redis-py's asyncio client: the storage hooks.

Why this design. The Redis job queues people run each solve at-least-once
in a way that fails somewhere jobwire's semantics table does not allow:

* **Celery (kombu's Redis transport)** moves a delivered message to an
  ``unacked`` sorted set scored by delivery time, and any worker puts back
  every message older than one global ``visibility_timeout``. One timeout for
  every job means long jobs (and ETA jobs, celery#2599, kombu#337) run twice
  while their first worker is still busy, and a crash waits the whole timeout.
* **Dramatiq** keeps each worker's unacked messages in a per-worker set with a
  heartbeat, and requeues a dead worker's messages: a crash is detected by a
  missed heartbeat, but there is no per-job lease or extension, and a
  requeue is not counted as an attempt, so a crash loop never ends.
* **BullMQ** (lists + Lua) takes a job into ``active`` with a lock key per job
  that the worker renews, and a stalled-job checker moves jobs whose lock
  lapsed back to wait. That is per-job leasing, but each worker renews its own
  locks over Redis, and it loses jobs when Redis evicts lock or job keys
  (bullmq#1827: anything but ``maxmemory-policy noeviction``).
* **Redis Streams** consumer groups keep a pending-entries list per consumer
  with an idle time; ``XAUTOCLAIM`` takes entries idle longer than a
  threshold. Again one threshold per claim call rather than a lease per job,
  and streams have no delay, priority, cancellation of an entry in place, or
  lookup by state, which jobwire needs beside them anyway.

Here the lease itself lives in the gateway's lease state machine (timers,
extension, fencing; :mod:`.._leases`) as for every provider, and Redis holds
what must survive the gateway: a hash per job, a ready sorted set per queue
and type (score: priority, then order), a delayed sorted set by due time, and
per gateway a leased sorted set by lease deadline. A gateway's liveness is a
heartbeat key with a TTL (Dramatiq's idea, per gateway rather than per
worker: a worker's crash is already seen at once as its stream dropping).
When the key lapses, any other gateway takes that gateway's leases back,
each counted as an attempt (``reap.lua``); a lease whose deadline passed
without an ending (its gateway could not reach Redis then) is taken back the
same way. Every transition is one Lua script (``lua/``), fenced on the job's
state, attempt and owning gateway, so no step depends on a client staying
connected between two commands, and a late answer from a gateway that lost a
job changes nothing (the lease scripts: :mod:`._leasing`). Idle gateways
wait on pub/sub (:mod:`._wake`), and claim as many jobs as the waiting
stream has free credits in one script; the answers of one frame are one
script call, which also leases the jobs the stream's returned credits ask
for next (:mod:`._ahead`). Per job a script writes only the job's hash; the
counts, sorted sets and wake-ups are written once per call (``lua/lib.lua``).
A queue under flow control keeps its ready jobs per concurrency key instead,
and the claim script admits what its limits allow (:mod:`._flow`).

Operators' writes (:mod:`._operations`) live in the same keys, so every
gateway sees them at once: a paused queue is in a set ``claim.lua`` skips
(a resume publishes a wake-up); a bulk replay or purge runs in batches of
1,000 jobs, each batch one script call, atomic on its own but not with the
others, so Redis is never blocked for long. Concurrent changes: a job that
moves between the read of its batch and its script is left alone and not
counted, and jobs enqueued during the scan may or may not be included (see
:mod:`._operations`). Worker streams are shared through Redis too
(:mod:`._workers`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any, ClassVar

from redis import exceptions

from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._limits import QueueLimits
from jobwire.gateway._models import JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway._provider_config import RedisProviderSettings
from jobwire.gateway.providers._flow import Hold
from jobwire.gateway.providers._types import (
    Claim,
    Consumer,
    Ending,
    Lease,
    Purged,
    QueueCounts,
)
from jobwire.gateway.providers.base import QueueProvider
from jobwire.gateway.providers.redis._connection import check_server, describe, open_client
from jobwire.gateway.providers.redis._elsewhere import Elsewhere
from jobwire.gateway.providers.redis._errors import DISCONNECTED, translated
from jobwire.gateway.providers.redis._flow import RedisFlow
from jobwire.gateway.providers.redis._inserts import Inserts
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._leasing import Leasing
from jobwire.gateway.providers.redis._operations import Operations
from jobwire.gateway.providers.redis._reads import Reads
from jobwire.gateway.providers.redis._scripts import Scripts
from jobwire.gateway.providers.redis._upkeep import Upkeep
from jobwire.gateway.providers.redis._wake import Wakeups
from jobwire.gateway.providers.redis._workers import SharedWorkers

logger = logging.getLogger("jobwire.gateway.redis")


class RedisProvider(QueueProvider[int]):
    """Queues in Redis, shared by any number of gateways (``type = "redis"``).

    A lease's handle is its attempt number: the scripts apply an ending only
    while the job is in that attempt and leased by this gateway.
    """

    #: Redis holds any delay, durably and for every gateway: the scheduler then
    #: holds none (its default SQLite file would tie a job to one gateway), unless
    #: ``[scheduler] delay_threshold`` says otherwise.
    max_native_delay: ClassVar[float | None] = math.inf
    supports_flow_control: ClassVar[bool] = True

    def __init__(self, settings: RedisProviderSettings, events: JobEvents) -> None:
        super().__init__(events, DedupRule(settings.dedup_window.total_seconds()))
        self._settings = settings
        self._where = describe(settings)
        self._keys = Keys.of(settings.key_prefix)
        self._gateway = uuid.uuid4().hex
        self._timeout = settings.gateway_timeout.total_seconds()
        self._client = open_client(settings)
        self._scripts = Scripts.register(self._client)
        self._reads = Reads(self._client, self._scripts, self._keys)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._leasing = Leasing(
            self._scripts,
            self._keys,
            self._gateway,
            max_history=settings.max_history,
            timeout=self._timeout,
            due=lambda at: self._upkeep.due(at),
            spawn=self._spawn,
        )
        elsewhere = Elsewhere(
            self._client,
            self._keys,
            self._gateway,
            events,
            lambda: self.host,
            self._leasing.record,
            self._reads.get_many,
            self._spawn,
        )
        self._elsewhere = elsewhere
        self._wake = Wakeups(self._client, self._keys, self._gateway, self._cancelled)
        self._upkeep = Upkeep(
            self._client,
            self._scripts,
            self._keys,
            self._gateway,
            timeout=self._timeout,
            retention=settings.history_retention.total_seconds(),
            take_back=elsewhere.take_back,
            refresh=elsewhere.refresh,
            presumed_dead=self._presumed_dead,
        )
        self._inserts = Inserts(
            self._scripts,
            self._keys,
            self._reads,
            self.dedup,
            self._request_ttl,
            self._upkeep.due,
            self._wake.wake_all,
        )
        self._ops = Operations(
            self._client,
            self._scripts,
            self._keys,
            self._reads,
            self._wake,
            events,
            self._request_ttl,
        )
        self._flow = RedisFlow(self._client, self._scripts, self._keys, self._reads)
        self.workers = SharedWorkers(self._client, self._scripts, self._keys)
        self.look_interval = self._timeout / 3  # the upkeep tick (._upkeep)

    @property
    def gateway_id(self) -> str:
        """This gateway's id in Redis (its heartbeat key and leased set)."""
        return self._gateway

    async def open(self) -> None:
        """Connect, check the server's settings, start listening and the timers."""
        try:
            with translated():
                await check_server(self._client, self._where)
                async with asyncio.timeout(self._settings.connect_timeout.total_seconds()):
                    await self._wake.start()
                await self._upkeep.start()
        except BaseException:
            await self._wake.stop()
            await self._client.aclose()
            raise
        logger.info("Redis provider on %s, gateway %s", self._where, self._gateway)

    async def aclose(self) -> None:
        """Stop the timers and the listener, end the heartbeat, close the client."""
        self._leasing.ahead.release()
        await self._upkeep.stop()
        await self._wake.stop()
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    # Jobs --------------------------------------------------------------------

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs in one script, deduplicated by ``self.dedup`` on what Redis holds."""
        # A client that gives up half-way must still get the script's answer read.
        return await asyncio.shield(self._inserts.insert(jobs))

    @property
    def _request_ttl(self) -> int:
        return max(1, int(self._settings.history_retention.total_seconds()))

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job as Redis holds it now (any gateway's changes included)."""
        return await self._reads.get(job_id)

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The jobs that hold these deduplication keys now."""
        with translated():
            held, _ = await self._reads.holders(self._keys.dedup, keys)
        now = time.time()
        return {key: job for key, job in held.items() if self.dedup.holds(job, now)}

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List newest first; the cursor is the creation order of the last job returned."""
        return await self._reads.list_jobs(where, limit, cursor)

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts kept by every script; for queues with limits, the jobs each holds back."""
        rows = await self._reads.counts(queue)
        stored = await self._flow.stored()
        for row in rows:
            limits = stored.get(row.queue)
            if limits is not None and limits.limited:
                row.held = await self._flow.held(
                    row.queue,
                    limits,
                    row.by_state[JobState.PENDING],
                    row.by_state[JobState.PROCESSING],
                )
        return rows

    async def cancel(self, job_id: str, message: str, lease: Lease[int] | None) -> JobRecord | None:
        """Cancel a job as read, unless it changed meanwhile (then read again).

        A job leased by another gateway is cancelled here, and that gateway
        is told on its cancel channel; it revokes the lease.
        """
        return await self._ops.cancel(job_id, message, self._settings.max_history)

    # Operations (._operations) --------------------------------------------

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Make one dead, failed or cancelled job pending again (``replay.lua``)."""
        return await self._ops.replay(job_id, payload, max_retries)

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay every selected job in batches; once per request id."""
        return await self._ops.replay_jobs(selector, request_id)

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete (or count) every selected job in batches (``purge.lua``)."""
        return await self._ops.purge(
            selector, include_processing=include_processing, validate_only=validate_only
        )

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue for every gateway on this Redis."""
        await self._ops.set_paused(queue, paused)

    # Leases ------------------------------------------------------------------

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[int]]:
        """Lease up to ``max_jobs`` jobs in one script; wait on pub/sub while there are none.

        Jobs leased ahead for the stream (when it last answered) come first,
        without a round trip.
        """
        delay = 0.05
        ahead = self._leasing.ahead
        while True:
            claims = ahead.take(consumer, max_jobs)
            if claims:
                return claims
            with (
                self._wake.waiting(consumer.queues) as woken,
                ahead.waiting(consumer, max_jobs, woken),
                translated(),
            ):
                try:
                    claims, token = await self._leasing.claim(consumer, max_jobs)
                except DISCONNECTED as error:
                    # Redis restarting: the stream stays, and waits for it.
                    logger.warning("Redis unreachable to claim jobs (%s); trying again", error)
                    await asyncio.sleep(delay)
                    delay = min(2.0, delay * 2)
                    continue
                if claims:
                    return claims
                delay = 0.05
                # Held back by a rate: its next token wakes the claim too.
                wait = self._timeout / 3 if token is None else min(self._timeout / 3, token)
                try:
                    async with asyncio.timeout(wait):
                        await woken
                except TimeoutError:
                    pass  # a token, or a wake-up lost while the listener reconnected

    async def settle(self, endings: Sequence[Ending[int]]) -> Sequence[bool]:
        """Record the endings of one frame (or one expiry) in one script call.

        The same call leases ahead the jobs the stream's freed credits will
        ask for (:mod:`._ahead`).
        """
        consumer = endings[0].lease.consumer if endings else None
        free = 0
        if consumer is not None and all(e.lease.consumer is consumer for e in endings):
            free = self.host.free_credits(consumer)
        return await self._leasing.settle(endings, free)

    async def extend(self, leases: Sequence[Lease[int]]) -> Sequence[bool]:
        """Move the leases' deadlines in Redis, so no other gateway takes them back."""
        return await self._leasing.extend(leases)

    async def save_progress(self, lease: Lease[int]) -> None:
        """Store the progress, if the lease is still this gateway's."""
        await self._leasing.save_progress(lease)

    # Flow control (._flow; the claims are lua/lib.lua's lease_flow) ----------

    async def set_limits(self, queue: str, limits: QueueLimits) -> None:
        """Store a queue's limits for every gateway; claims waiting on it look again."""
        await self._flow.set_limits(queue, limits)

    async def limits(self) -> dict[str, QueueLimits]:
        """Every configured queue's limits."""
        return await self._flow.stored()

    async def queue_limits(self, queue: str) -> QueueLimits:
        """One queue's limits."""
        return await self._flow.limits(queue)

    async def key_jobs(self, queue: str, key: str) -> list[JobRecord]:
        """A key's pending and processing jobs, oldest first."""
        return await self._flow.key_jobs(queue, key)

    async def hold(self, job: JobRecord) -> Hold | None:
        """The limit holding a pending job back now, if one does."""
        return await self._flow.hold(job)

    def _cancelled(self, job_id: str) -> None:
        """A job leased here was cancelled or deleted through some gateway."""
        self._leasing.ahead.drop(job_id)
        self._elsewhere.cancelled(job_id)

    async def _presumed_dead(self) -> None:
        """This gateway's heartbeat had lapsed: others may have taken its leases."""
        self._leasing.ahead.release()  # fenced: what another gateway took stays its own
        await self._elsewhere.reconcile()

    def _spawn(self, step: Any) -> None:
        task = asyncio.get_running_loop().create_task(step)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if not isinstance(error, exceptions.RedisError | OSError):
                logger.error("Redis provider task failed: %r", error)
