"""Operators' writes on Redis: replay, purge and pause, seen by every gateway at once.

A bulk replay or purge is one call to the gateway, which works through the
jobs in batches of :data:`BATCH`: it reads a batch (the ``jobs`` index in
creation order, states first, then the candidates' hashes), picks the jobs
the selector matches, and changes them in one script call (``replay.lua``,
``purge.lua``). Each batch is atomic on its own and Redis is never held for
more than one batch, so other gateways' claims and answers go on between
batches. What that means for concurrent changes: a job is changed only if it
is still in the state and attempt it was read in, so a job that moves
between the read of its batch and its script (a pending job claimed, a dead
one replayed by someone else) is left alone and not counted; a job created
after the scan passed its place is not touched. A ``RetryJobs`` request id
counts across batches in Redis (``replays:ID``): a repeat after the call
finished returns the recorded count and changes nothing; a repeat after a
call that broke off half-way replays the rest and returns the total.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, cast

from redis.asyncio import Redis

from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import REPLAYABLE, JobRecord, JobState
from jobwire.gateway.providers._types import Purged
from jobwire.gateway.providers.redis import _codec as codec
from jobwire.gateway.providers.redis._errors import RedisUnavailableError, translated
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._reads import Reads
from jobwire.gateway.providers.redis._scripts import Scripts
from jobwire.gateway.providers.redis._wake import Wakeups

BATCH = 1000
"""Jobs read, and changed by one script call, at a time."""

_RACES = 8
"""Tries of a change that another gateway's write raced."""


class Operations:
    """Replay, purge and pause on the keys every gateway shares.

    Args:
        client: the provider's client.
        scripts: the provider's scripts.
        keys: the key layout.
        reads: the provider's reads.
        wake: this gateway's waiting claims (a resume wakes them at once).
        events: where replayed jobs are published to ``WatchJob`` streams.
        request_ttl: seconds a ``RetryJobs`` request id is remembered.
    """

    def __init__(
        self,
        client: Redis,
        scripts: Scripts,
        keys: Keys,
        reads: Reads,
        wake: Wakeups,
        events: JobEvents,
        request_ttl: int,
    ) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys
        self._reads = reads
        self._wake = wake
        self._events = events
        self._request_ttl = request_ttl

    async def cancel(self, job_id: str, message: str, max_history: int) -> JobRecord | None:
        """Cancel a job as read, unless it changed meanwhile (then read again)."""
        with translated():
            for _ in range(_RACES):
                job = await self._reads.get(job_id)
                if job is None or job.state.is_terminal:
                    return job
                state, attempt, now = job.state, job.attempt, time.time()
                job.cancel(message, now)
                args: list[Any] = [
                    self._keys.prefix,
                    job_id,
                    state.value,
                    attempt,
                    repr(now),
                    codec.failure(job.last_error),
                    max_history,
                ]
                if await self._scripts.cancel(keys=[self._keys.seq], args=args):
                    return job
        raise RedisUnavailableError("the job kept changing while being cancelled; retry")

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Add the queue to the paused set, or take it out and wake every gateway's claims."""
        with translated():
            if paused:
                await self._client.sadd(self._keys.paused, queue)
                return
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.srem(self._keys.paused, queue)
                pipe.publish(self._keys.wake_channel, queue)
                await pipe.execute()
        self._wake.wake(queue)

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> tuple[JobRecord, bool] | None:
        """Replay one job as read, unless it changed meanwhile (then read again)."""
        with translated():
            for _ in range(_RACES):
                job = await self._reads.get(job_id)
                if job is None:
                    return None
                if job.state not in REPLAYABLE:
                    return job, False
                state, attempt, now = job.state, job.attempt, time.time()
                job.replay(now, payload, max_retries)
                changed = payload is not None or max_retries is not None
                args = [state.value, attempt, codec.body(job) if changed else b""]
                replayed = await self._replay_script(now, "", False, [job_id, *args])
                if replayed:
                    return job, True
        raise RedisUnavailableError("the job kept changing while being replayed; retry")

    async def replay_jobs(self, selector: JobSelector, request_id: str) -> int:
        """Replay every selected job, batch by batch; once per request id."""
        request = self._keys.replays(request_id) if request_id else ""
        total = 0
        with translated():
            if request:
                done, recorded = await self._client.hmget(request, ["done", "n"])
                if done:
                    return int(recorded or 0)
            async for batch in self._select(selector, selector.states & REPLAYABLE):
                now = time.time()
                args: list[Any] = []
                for job in batch:
                    args += [job.id, job.state.value, job.attempt, b""]
                    job.replay(now, None, None)
                replayed = await self._replay_script(now, request, False, args)
                total += len(replayed)
                by_id = {job.id: job for job in batch}
                for job_id in replayed:
                    self._events.publish(by_id[job_id])
            if request:
                await self._replay_script(time.time(), request, True, [])
                done, recorded = await self._client.hmget(request, ["done", "n"])
                total = int(recorded or 0)
        return total

    async def _replay_script(
        self, now: float, request: str, last: bool, jobs: list[Any]
    ) -> list[str]:
        args: list[Any] = [
            self._keys.prefix,
            repr(now),
            request,
            self._request_ttl,
            1 if last else 0,
        ]
        reply = await self._scripts.replay(keys=[self._keys.seq], args=[*args, *jobs])
        return [item.decode() for item in reply[:-1]]

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> Purged:
        """Delete (or count) every selected job, batch by batch."""
        states = set(selector.states or JobState)
        if not include_processing:
            states.discard(JobState.PROCESSING)
        count = 0
        processing: list[str] = []
        with translated():
            async for batch in self._select(selector, states):
                if validate_only:
                    count += len(batch)
                    continue
                args: list[Any] = [self._keys.prefix]
                for job in batch:
                    args += [job.id, job.state.value, job.attempt]
                reply = await self._scripts.purge(keys=[self._keys.seq], args=args)
                count += int(reply[0])
                processing += [item.decode() for item in reply[1:]]
        return Purged(count, tuple(processing))

    async def _select(
        self, selector: JobSelector, states: Collection[JobState]
    ) -> AsyncIterator[list[JobRecord]]:
        """The selected jobs in ``states``, a batch at a time, oldest first."""
        wanted = {str(state.value).encode() for state in states}
        if selector.ids:
            # Named jobs (at most MAX_SELECTED_IDS, one batch): read, not scanned for.
            candidates = await self._candidates(sorted(selector.ids), wanted.__contains__)
            found = await self._reads.get_many(candidates)
            named = [job for job in found.values() if job.state in states and selector.matches(job)]
            if named:
                yield sorted(named, key=lambda job: job.create_time)
            return
        after = "-inf"
        while True:
            chunk = cast(
                list[tuple[bytes, float]],
                await self._client.zrangebyscore(
                    self._keys.jobs, after, "+inf", start=0, num=BATCH, withscores=True
                ),
            )
            if not chunk:
                return
            after = f"({int(chunk[-1][1])}"
            ids = [member.decode() for member, _ in chunk]
            candidates = await self._candidates(ids, wanted.__contains__)
            found = await self._reads.get_many(candidates)
            batch = [job for job in found.values() if job.state in states and selector.matches(job)]
            if batch:
                yield batch

    async def _candidates(self, ids: list[str], wanted: Callable[[bytes], bool]) -> list[str]:
        """Those of ``ids`` whose stored state is wanted (one round trip, no bodies read)."""
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(self._keys.job(job_id), "s")
            states = await pipe.execute()
        return [
            job_id
            for job_id, state in zip(ids, states, strict=True)
            if state is not None and wanted(state)
        ]
