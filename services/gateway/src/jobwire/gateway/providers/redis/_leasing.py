"""Lease transitions in Redis: claim, settle, extend, progress, one script call each.

Each script is fenced on the job's state, attempt and owning gateway, so a
late answer from a gateway that lost a job changes nothing. The answers a
worker sends are recorded through a short Redis restart (``_patiently``): an
answer that fails ends the worker's stream, and its jobs run again. The call
that records a stream's answers also leases the jobs its returned credits
will ask for (:mod:`._ahead`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from jobwire.gateway._models import AttemptEnd, Failure, JobRecord, JobState
from jobwire.gateway.providers._types import Claim, Consumer, Ending, Lease
from jobwire.gateway.providers.redis import _codec as codec
from jobwire.gateway.providers.redis._ahead import ClaimsAhead
from jobwire.gateway.providers.redis._errors import DISCONNECTED, translated
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._scripts import Scripts


class Leasing:
    """The provider's lease scripts, as this gateway calls them.

    Args:
        scripts: the provider's scripts.
        keys: the key layout.
        gateway: this gateway's id (the owner the scripts fence on).
        max_history: finished jobs Redis keeps (``settle.lua`` trims the rest).
        timeout: how long an answer is retried through a Redis restart, in seconds.
        due: tells the upkeep timer when a backed-off job becomes ready (ms).
        spawn: runs a coroutine in the background, its failure logged.
    """

    def __init__(
        self,
        scripts: Scripts,
        keys: Keys,
        gateway: str,
        *,
        max_history: int,
        timeout: float,
        due: Callable[[int], None],
        spawn: Callable[[Coroutine[Any, Any, object]], None],
    ) -> None:
        self._scripts = scripts
        self._keys = keys
        self._gateway = gateway
        self._max_history = max_history
        self._timeout = timeout
        self._due = due
        self._spawn = spawn
        self.ahead = ClaimsAhead(self._unclaim)
        """Jobs leased ahead for streams of this gateway."""

    @staticmethod
    def _consumer_args(consumer: Consumer, max_jobs: int) -> list[Any]:
        """``lease_jobs``'s arguments (``lua/lease.lua``) for ``consumer``."""
        now = time.time()
        return [
            consumer.worker_id,
            repr(now),
            codec.millis(now + consumer.lease_duration),
            max_jobs,
            len(consumer.queues),
            *consumer.queues,
            *sorted(consumer.job_types),
        ]

    async def claim(
        self, consumer: Consumer, max_jobs: int
    ) -> tuple[list[Claim[int]], float | None]:
        """Lease up to ``max_jobs`` jobs in one script; what a cancelled call leased goes back.

        Also returns, when a rate held the claim back, the seconds until its
        next token (else None).
        """
        args = [self._keys.prefix, self._gateway, *self._consumer_args(consumer, max_jobs)]
        call = asyncio.ensure_future(self._scripts.claim(keys=[self._keys.seq], args=args))
        try:
            replies, wait = await asyncio.shield(call)
        except asyncio.CancelledError:
            # The consumer left during the round trip: what the script leased goes back.
            call.add_done_callback(self._give_back)
            raise
        claims = [Claim(job, job.attempt) for job in map(codec.job_of, replies)]
        return claims, float(wait) / 1000 if wait else None

    def _give_back(self, call: asyncio.Future[Any]) -> None:
        if call.cancelled() or call.exception() is not None or not call.result()[0]:
            return
        now = time.time()
        jobs = [codec.job_of(values) for values in call.result()[0]]
        items = []
        for job in jobs:
            failure = Failure(
                "its worker stream closed before delivery", "WORKER_LOST", attempt=job.attempt
            )
            items.append((job, job.attempt, AttemptEnd(JobState.PENDING, now, failure)))
        self._spawn(self.record(items))

    def _unclaim_ahead(self, call: asyncio.Future[Any]) -> None:
        if not call.cancelled() and call.exception() is None and call.result()[1]:
            self._unclaim([codec.job_of(values) for values in call.result()[1]])

    def _unclaim(self, jobs: Sequence[JobRecord]) -> None:
        """Put jobs leased ahead that no stream took back in their queue, attempt undone."""
        args: list[Any] = [self._keys.prefix, self._gateway, repr(time.time())]
        for job in jobs:
            args += [job.id, job.attempt]
        self._spawn(self._patiently(self._scripts.unclaim, args))

    async def settle(self, endings: Sequence[Ending[int]], free: int = 0) -> Sequence[bool]:
        """Record the endings of one frame (or one expiry) in one script call.

        ``free``: credits of the endings' stream not in use; the call leases
        as many jobs ahead for it as it does not hold yet (:mod:`._ahead`).
        """
        items = [(e.lease.job, e.lease.handle, e.end) for e in endings]
        consumer = endings[0].lease.consumer if endings else None
        wanted = 0
        if consumer is not None and free > 0:
            wanted = self.ahead.wanted(consumer, free)
        with translated():
            if consumer is None or wanted <= 0:
                return await self.record(items)
            return await self.record(items, consumer, wanted)

    async def record(
        self,
        items: Sequence[tuple[JobRecord, int, AttemptEnd]],
        consumer: Consumer | None = None,
        wanted: int = 0,
    ) -> list[bool]:
        """Record endings of this gateway's leases; True where the script applied one.

        With a ``consumer``, up to ``wanted`` jobs are leased ahead for it in
        the same call.
        """
        args: list[Any] = [self._keys.prefix, self._gateway, self._max_history]
        due: list[int] = []
        for job, attempt, end in items:
            job.end_attempt(end)
            when = ""
            if end.state is JobState.FAILED and end.run_at is not None:
                due.append(codec.millis(end.run_at))
                when = str(due[-1])
            error = codec.failure(end.failure)
            args.append(
                f"{job.id},{attempt},{end.state.value},{job.update_time!r},"
                f"{codec.seconds(job.end_time)},{when},{codec.seconds(job.schedule_time)},"
                f"{1 if error else 0},{0 if end.result is None else 1}"
            )
            if error:
                args += [error, codec.errors(job)]
            if end.result is not None:
                args += [end.result, end.result_content_type]
        if consumer is None:
            applied, taken = await self._patiently(self._scripts.settle, args)
        else:
            args += ["", *self._consumer_args(consumer, wanted)]
            call = asyncio.ensure_future(self._patiently(self._scripts.settle, args))
            try:
                applied, taken = await asyncio.shield(call)
            except asyncio.CancelledError:
                # The stream ended during the round trip: what was leased ahead goes back.
                call.add_done_callback(self._unclaim_ahead)
                raise
        for due_at in due:
            self._due(due_at)
        if consumer is not None and taken:
            self.ahead.put(consumer, [Claim(job, job.attempt) for job in map(codec.job_of, taken)])
        return [bool(flag) for flag in applied]

    async def extend(self, leases: Sequence[Lease[int]]) -> Sequence[bool]:
        """Move the leases' deadlines in Redis, so no other gateway takes them back."""
        args: list[Any] = [self._keys.prefix, self._gateway]
        for lease in leases:
            args += [lease.job.id, lease.handle, codec.millis(lease.deadline)]
        with translated():
            held = await self._patiently(self._scripts.extend, args)
        return [bool(flag) for flag in held]

    async def _patiently(self, script: Any, args: list[Any]) -> Any:
        """Run a script that records what a worker did, through a short Redis restart.

        Up to ``gateway_timeout``: an answer that fails here ends the worker's
        stream, and its jobs run again. If the connection broke after Redis ran
        the script, the retry finds the leases ended and says so (fenced).
        """
        deadline = time.monotonic() + self._timeout
        delay = 0.05
        while True:
            try:
                return await script(keys=[self._keys.seq], args=args)
            except DISCONNECTED:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(1.0, delay * 2)

    async def save_progress(self, lease: Lease[int]) -> None:
        """Store the progress, if the lease is still this gateway's."""
        job = lease.job
        assert job.progress is not None
        args: list[Any] = [
            self._keys.prefix,
            self._gateway,
            job.id,
            lease.handle,
            job.progress.SerializeToString(),
            repr(job.update_time),
        ]
        with translated():
            await self._scripts.progress(keys=[self._keys.seq], args=args)
