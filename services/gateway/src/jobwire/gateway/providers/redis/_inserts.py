"""Enqueueing into Redis: one script call per batch, deduplicated on what Redis holds.

The batch is first written as if no request id or deduplication key were
taken (one round trip); ``insert.lua`` refuses the whole batch if one maps
to a job other than the one read, which happens when another gateway
enqueued with the same key meanwhile. Then the holders are read, the same
rule as every provider's decides again (``DedupRule.admit``), and the batch
is written again, up to :data:`_RACES` times.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from jobwire.gateway._dedup import DedupRule, lookups
from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway.providers.redis import _codec as codec
from jobwire.gateway.providers.redis._errors import RedisUnavailableError, translated
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._reads import Reads
from jobwire.gateway.providers.redis._scripts import Scripts

_RACES = 8
"""Tries of an enqueue that other gateways' enqueues with the same keys raced."""


class Inserts:
    """The provider's ``insert`` hook.

    Args:
        scripts: the provider's scripts (``insert.lua``).
        keys: the key layout.
        reads: the provider's reads (the holders of request ids and keys).
        dedup: the deduplication rule.
        request_ttl: seconds a request id is kept.
        due: told the due time (ms) of each job stored as scheduled.
        ready: told the queues that got jobs ready now, once they are stored: this
            gateway's waiting claims look at once, without waiting for the
            script's wake-up to come back over pub/sub.
    """

    def __init__(
        self,
        scripts: Scripts,
        keys: Keys,
        reads: Reads,
        dedup: DedupRule,
        request_ttl: int,
        due: Callable[[int], None],
        ready: Callable[[Iterable[str]], None],
    ) -> None:
        self._scripts = scripts
        self._keys = keys
        self._reads = reads
        self._dedup = dedup
        self._request_ttl = request_ttl
        self._due = due
        self._ready = ready

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs in one script call, or answer with the jobs they duplicate."""
        request_ids, keys = lookups(jobs)
        by_request: dict[str, JobRecord] = {}
        by_key: dict[str, JobRecord] = {}
        seen_requests: dict[str, str] = {}
        seen_keys: dict[str, str] = {}
        with translated():
            for race in range(_RACES):
                # First as if no request id or key were taken (one round trip: the
                # script refuses if one is); then on what Redis holds.
                if race and request_ids:
                    by_request, seen_requests = await self._reads.holders(
                        self._keys.request, request_ids
                    )
                if race and keys:
                    by_key, seen_keys = await self._reads.holders(self._keys.dedup, keys)
                now = time.time()
                results = self._dedup.admit(
                    jobs,
                    now,
                    functools.partial(JobRecord.create, now=now),
                    by_request=by_request,
                    by_key=by_key,
                )
                args: list[Any] = [self._keys.prefix, self._request_ttl]
                due: list[int] = []
                queues: set[str] = set()
                for new, (job, duplicate) in zip(jobs, results, strict=True):
                    if duplicate:
                        continue
                    when = ""
                    if job.state is JobState.SCHEDULED and job.schedule_time is not None:
                        due.append(codec.millis(job.schedule_time))
                        when = str(due[-1])
                    else:
                        queues.add(job.queue)
                    key, request = job.deduplication_key, new.request_id
                    lane = job.concurrency_key
                    flags = f"{1 if key else 0},{1 if request else 0},{1 if lane else 0}"
                    args += [
                        f"{job.id},{job.state.value},{job.priority},{when},{now!r},"
                        f"{codec.seconds(job.schedule_time)},{flags}",
                        job.queue,
                        job.type,
                        codec.body(job),
                    ]
                    if key:
                        args += [key, seen_keys.get(key, "")]
                    if request:
                        args += [request, seen_requests.get(request, "")]
                    if lane:
                        args.append(lane)
                if len(args) == 2 or await self._scripts.insert(keys=[self._keys.seq], args=args):
                    for due_at in due:
                        self._due(due_at)
                    if queues:
                        self._ready(queues)
                    return results
        raise RedisUnavailableError(
            "enqueue kept racing other gateways' enqueues with the same keys; retry"
        )
