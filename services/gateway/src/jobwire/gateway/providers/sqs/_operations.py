"""Operators' writes on the SQS provider's records: replay, purge, pause.

Everything here is in the gateway's database, so every gateway of one
provider sees it: paused queues, the ``RetryJobs`` request ids and purged
jobs' tombstones (their messages may still be in SQS; they are deleted when
received). The worker streams each gateway publishes are rows there too
(:mod:`.._worker_rows`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._db import error_json, selector_clauses, transaction
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers.sqs._records import JobRecords
from jobwire.gateway.providers.sqs._tables import (
    DedupKey,
    PausedQueue,
    PurgedJob,
    ReplayRequest,
    StoredJob,
    effective,
    record_of,
    to_datetime,
)

_J = StoredJob.__table__.c

REPLAY = (
    update(StoredJob)
    .where(_J.id == bindparam("b_id"), _J.state == bindparam("b_was"))
    .values(
        state="pending",
        attempt=0,
        uncounted=0,
        payload=bindparam("b_payload"),
        max_retries=bindparam("b_max_retries"),
        update_time=bindparam("b_now"),
        schedule_time=None,
        end_time=None,
        worker_id="",
        result=None,
        result_content_type="",
        progress=None,
        last_error=bindparam("b_last_error"),
    )
)


class Operations:
    """Operators' reads and writes on the records database.

    Args:
        records: the job records (their engine and write buffer).
    """

    def __init__(self, records: JobRecords) -> None:
        self._records = records

    def _connection(self) -> AbstractAsyncContextManager[AsyncConnection]:
        return transaction(self._records.engine, "job records")

    # Replay ------------------------------------------------------------------

    async def selected(
        self, selector: JobSelector, states: Collection[JobState], now: float
    ) -> list[JobRecord]:
        """The jobs ``selector`` matches among those stored in ``states``."""
        await self._records.flush()
        query = select(StoredJob).where(
            _J.state.in_([s.name.lower() for s in states]),
            *selector_clauses(
                selector,
                queue=_J.queue,
                job_type=_J.type,
                job_id=_J.id,
                create_time=_J.create_time,
                as_stored=to_datetime,
                attributes=_J.attributes,
            ),
        )
        async with self._connection() as conn:
            rows = list((await conn.execute(query)).mappings())
        # The error substring is matched here: the error is JSON in the row.
        return [
            job for job in (effective(record_of(r), now) for r in rows) if selector.matches(job)
        ]

    async def replay(
        self, jobs: Sequence[tuple[JobRecord, JobState]], request_id: str = ""
    ) -> int | None:
        """Store replayed jobs (``JobRecord.replay`` done) that are still in their old state.

        With a ``request_id`` it is recorded in the same transaction; None when
        another call recorded it first (nothing is stored then).
        """
        params = [
            {
                "b_id": job.id,
                "b_was": was.name.lower(),
                "b_payload": job.payload,
                "b_max_retries": job.max_retries,
                "b_now": to_datetime(job.update_time),
                "b_last_error": error_json(job),
            }
            for job, was in jobs
        ]
        try:
            async with self._connection() as conn:
                if params:
                    await conn.execute(REPLAY, params)
                if request_id:
                    await conn.execute(
                        insert(ReplayRequest).values(
                            request_id=request_id,
                            count=len(params),
                            create_time=to_datetime(time.time()),
                        )
                    )
        except IntegrityError:
            return None
        return len(params)

    async def replayed_count(self, request_id: str) -> int | None:
        """The count a ``RetryJobs`` request id recorded, or None when it is new."""
        async with self._connection() as conn:
            count = await conn.scalar(
                select(ReplayRequest.count).where(ReplayRequest.request_id == request_id)
            )
        return None if count is None else int(count)

    async def forget_request(self, request_id: str) -> None:
        """Drop a ``RetryJobs`` request id whose replay did not complete."""
        async with self._connection() as conn:
            await conn.execute(delete(ReplayRequest).where(ReplayRequest.request_id == request_id))

    # Purge -------------------------------------------------------------------

    async def purge(self, job_ids: Sequence[str], now: float) -> None:
        """Delete jobs and their keys, leaving tombstones for their messages."""
        for job_id in job_ids:
            self._records.forget(job_id)
        stamp = to_datetime(now)
        async with self._connection() as conn:
            for start in range(0, len(job_ids), 500):
                chunk = list(job_ids[start : start + 500])
                await conn.execute(delete(DedupKey).where(DedupKey.job_id.in_(chunk)))
                await conn.execute(delete(StoredJob).where(_J.id.in_(chunk)))
                await conn.execute(
                    insert(PurgedJob), [{"id": job_id, "purge_time": stamp} for job_id in chunk]
                )

    async def purged_among(self, job_ids: Collection[str]) -> set[str]:
        """Which of ``job_ids`` were purged."""
        async with self._connection() as conn:
            rows = await conn.scalars(select(PurgedJob.id).where(PurgedJob.id.in_(list(job_ids))))
            return set(rows)

    async def gone_among(self, job_ids: Collection[str]) -> set[str]:
        """Which of ``job_ids`` have no record any more (purged elsewhere)."""
        async with self._connection() as conn:
            rows = await conn.scalars(select(_J.id).where(_J.id.in_(list(job_ids))))
            return set(job_ids) - set(rows)

    # Pause -------------------------------------------------------------------

    async def set_paused(self, queue: str, paused: bool) -> None:
        """Record or clear a queue's pause."""
        async with self._connection() as conn:
            await conn.execute(delete(PausedQueue).where(PausedQueue.queue == queue))
            if paused:
                await conn.execute(
                    insert(PausedQueue).values(queue=queue, pause_time=to_datetime(time.time()))
                )

    async def paused(self) -> set[str]:
        """The paused queues."""
        async with self._connection() as conn:
            return set(await conn.scalars(select(PausedQueue.queue)))
