"""Reading jobs back from Redis: ``GetJob``, ``ListJobs``, ``GetQueueStats``, dedup lookups.

Every gateway reads the same keys, so each answers for every job whichever
gateway changed it last.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable
from typing import cast

from redis.asyncio import Redis

from jobwire.gateway._errors import InvalidPageTokenError
from jobwire.gateway._models import JobFilter, JobRecord, JobState
from jobwire.gateway.providers._types import QueueCounts
from jobwire.gateway.providers.redis import _codec as codec
from jobwire.gateway.providers.redis._errors import translated
from jobwire.gateway.providers.redis._keys import Keys
from jobwire.gateway.providers.redis._scripts import Scripts

_LIST_CHUNK = 200


class Reads:
    """The provider's reads.

    Args:
        client: the provider's client.
        scripts: the provider's scripts (``counts.lua``).
        keys: the key layout.
    """

    def __init__(self, client: Redis, scripts: Scripts, keys: Keys) -> None:
        self._client = client
        self._scripts = scripts
        self._keys = keys

    async def holders(
        self, key_of: Callable[[str], str], names: Collection[str]
    ) -> tuple[dict[str, JobRecord], dict[str, str]]:
        """The stored jobs ``names`` (request ids or keys) map to, and the raw ids they map to."""
        if not names:
            return {}, {}
        ordered = list(names)
        ids = cast(list[bytes | None], await self._client.mget([key_of(name) for name in ordered]))
        seen = {name: i.decode() for name, i in zip(ordered, ids, strict=True) if i is not None}
        found = await self.get_many(set(seen.values()))
        return {name: found[i] for name, i in seen.items() if i in found}, seen

    async def get_many(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """The stored jobs of ``job_ids``, by id; the unknown ones left out."""
        ids = list(job_ids)
        if not ids:
            return {}
        async with self._client.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self._keys.job(job_id), codec.FIELDS)
            replies = await pipe.execute()
        return {job.id: job for job in map(codec.from_values, replies) if job is not None}

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job as Redis holds it now (any gateway's changes included)."""
        with translated():
            values = await self._client.hmget(self._keys.job(job_id), codec.FIELDS)
        return codec.from_values(values)

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """List newest first; the cursor is the creation order of the last job returned."""
        if cursor is not None and not cursor.isdigit():
            raise InvalidPageTokenError("page_token", "not a token from this gateway")
        before = "+inf" if cursor is None else f"({cursor}"
        page: list[JobRecord] = []
        with translated():
            while True:
                chunk = cast(
                    list[tuple[bytes, float]],
                    await self._client.zrevrangebyscore(
                        self._keys.jobs, before, "-inf", start=0, num=_LIST_CHUNK, withscores=True
                    ),
                )
                if not chunk:
                    return page, None
                found = await self.get_many(member.decode() for member, _ in chunk)
                for member, order in chunk:
                    job = found.get(member.decode())
                    if job is None or not where.matches(job):
                        continue
                    if len(page) == limit:
                        return page, cursor
                    page.append(job)
                    cursor = str(int(order))
                before = f"({int(chunk[-1][1])}"

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        """Counts kept by every script, for each queue, in one round trip."""
        with translated():
            reply = await self._scripts.counts(
                keys=[self._keys.seq], args=[self._keys.prefix, *([queue] if queue else [])]
            )
        now = time.time()
        rows = []
        for i in range(0, len(reply), 5):
            name, counts, ready, oldest, paused = reply[i : i + 5]
            by_state = dict.fromkeys(JobState, 0)
            for state, n in codec.pairs(counts).items():
                by_state[JobState(int(state))] = int(n)
            rows.append(
                QueueCounts(
                    queue=name.decode(),
                    by_state=by_state,
                    oldest_pending_age=max(0.0, now - float(oldest)) if oldest else 0.0,
                    pending_types=frozenset(t.decode() for t in ready),
                    paused=bool(paused),
                )
            )
        return sorted(rows, key=lambda row: row.queue)
