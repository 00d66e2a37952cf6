"""The scheduler's repository for what clients manage: held one-time jobs and schedules.

The runner's claim/confirm protocol is in :mod:`~jobwire.gateway.scheduler.firing`;
the connection and transactions in :mod:`~jobwire.gateway.scheduler.database`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, delete, func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from jobwire.gateway._db import create_engine, filter_clauses, selector_clauses
from jobwire.gateway._dedup import DedupRule, lookups
from jobwire.gateway._errors import ScheduleExistsError, ScheduleNotFoundError
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway.scheduler.database import locked
from jobwire.gateway.scheduler.firing import Firing
from jobwire.gateway.scheduler.models import HeldStatus, Schedule, ScheduledJob
from jobwire.gateway.scheduler.rows import (
    STATE_OF,
    first_run,
    held_record,
    new_held,
    new_schedule,
    spec_of,
    write_spec,
)
from jobwire.gateway.scheduler.spec import ScheduleSpec

# A job held here keeps its key until handed to the queue, which takes it over.
_RULE = DedupRule()


class SchedulerStore(Firing):
    """Async access to the scheduler's tables on SQLite or PostgreSQL."""

    @classmethod
    def from_url(cls, url: str) -> SchedulerStore:
        """Return a store on the database at ``url``."""
        return cls(create_engine(url, what="scheduler.database_url"))

    # One-time jobs -----------------------------------------------------------

    async def hold(self, jobs: Sequence[NewJob], now: datetime) -> list[tuple[JobRecord, bool]]:
        """Store one-time jobs until their ``schedule_time``.

        Duplicates (by request id, or by a deduplication key of a job still
        held) are decided by the shared rule (:mod:`jobwire.gateway._dedup`):
        the existing job is returned with True.
        """
        async with self._transaction() as session:
            by_request, by_key = await self._duplicates(session, jobs)

            def create(new: NewJob) -> JobRecord:
                row = new_held(new, now)
                session.add(row)
                return held_record(row)

            return _RULE.admit(jobs, now.timestamp(), create, by_request=by_request, by_key=by_key)

    async def _duplicates(
        self, session: AsyncSession, jobs: Sequence[NewJob]
    ) -> tuple[dict[str, JobRecord], dict[str, JobRecord]]:
        request_ids, keys = lookups(jobs)
        by_request: dict[str, JobRecord] = {}
        by_key: dict[str, JobRecord] = {}
        if request_ids:
            rows = await session.scalars(
                select(ScheduledJob).where(ScheduledJob.request_id.in_(request_ids))
            )
            by_request = {row.request_id: held_record(row) for row in rows}
        if keys:
            rows = await session.scalars(
                select(ScheduledJob).where(
                    ScheduledJob.deduplication_key.in_(keys),
                    ScheduledJob.status.in_([HeldStatus.SCHEDULED, HeldStatus.CLAIMED]),
                )
            )
            by_key = {row.deduplication_key: held_record(row) for row in rows}
        return by_request, by_key

    async def key_holders(self, keys: Collection[str]) -> dict[str, JobRecord]:
        """The held jobs that hold these deduplication keys."""
        async with self._transaction() as session:
            rows = await session.scalars(
                select(ScheduledJob).where(
                    ScheduledJob.deduplication_key.in_(keys),
                    ScheduledJob.status.in_([HeldStatus.SCHEDULED, HeldStatus.CLAIMED]),
                )
            )
            return {row.deduplication_key: held_record(row) for row in rows}

    async def list_held(
        self, where: JobFilter, limit: int, after: tuple[datetime, str] | None
    ) -> list[JobRecord]:
        """Jobs the scheduler answers for, newest first, created before ``after``."""
        statuses = [
            status
            for status, state in STATE_OF.items()
            if not where.states or state in where.states
        ]
        if not statuses:
            return []
        query = (
            select(ScheduledJob)
            .where(ScheduledJob.status.in_(statuses))
            .order_by(ScheduledJob.create_time.desc(), ScheduledJob.id.desc())
            .limit(limit)
        )
        query = query.where(
            *filter_clauses(where, ScheduledJob.queue, ScheduledJob.type, ScheduledJob.id)
        )
        if after is not None:
            created, job_id = after
            query = query.where(
                tuple_(ScheduledJob.create_time, ScheduledJob.id) < tuple_(created, job_id)
            )
        async with self._transaction() as session:
            return [held_record(row) for row in await session.scalars(query)]

    async def count_held(self, queue: str | None) -> dict[str, dict[JobState, int]]:
        """Per queue, the jobs the scheduler answers for, by state."""
        query = (
            select(ScheduledJob.queue, ScheduledJob.status, func.count())
            .where(ScheduledJob.status.in_(list(STATE_OF)))
            .group_by(ScheduledJob.queue, ScheduledJob.status)
        )
        if queue is not None:
            query = query.where(ScheduledJob.queue == queue)
        counts: dict[str, dict[JobState, int]] = {}
        async with self._transaction() as session:
            for name, status, count in await session.execute(query):
                by_state = counts.setdefault(name, {})
                state = STATE_OF[status]
                by_state[state] = by_state.get(state, 0) + count
        return counts

    async def get_held(self, job_id: str) -> ScheduledJob | None:
        """Return a one-time job the scheduler knows, in any status."""
        async with self._transaction() as session:
            return await session.get(ScheduledJob, job_id)

    async def cancel_held(self, job_id: str, reason: str, now: datetime) -> ScheduledJob | None:
        """Cancel a held job; None when the scheduler does not hold it (any more).

        Cancelling a cancelled job returns it unchanged. A job being handed
        over right now is cancelled too: the runner sees that when it confirms
        the hand-over and cancels the job in the provider.
        """
        async with self._transaction() as session:
            row = await session.get(ScheduledJob, job_id, with_for_update=self._postgres)
            if row is None or row.status is HeldStatus.ENQUEUED:
                return None
            if row.status is not HeldStatus.CANCELLED:
                row.status = HeldStatus.CANCELLED
                row.last_error = reason or "cancelled"
                row.claim_expire_time = None
                row.update_time = now
            return row

    async def purge_held(self, selector: JobSelector, *, validate_only: bool) -> int:
        """Delete (or count) the held and cancelled jobs ``selector`` matches.

        A job being handed to the provider right now (claimed) is left alone:
        it is the provider's in a moment.
        """
        where = self._selected(selector)
        if where is None:
            return 0
        async with self._transaction() as session:
            if validate_only:
                count = await session.scalar(
                    select(func.count()).select_from(ScheduledJob).where(*where)
                )
                return int(count or 0)
            deleted = await session.scalars(
                delete(ScheduledJob).where(*where).returning(ScheduledJob.id)
            )
            return len(list(deleted))

    def _selected(self, selector: JobSelector) -> list[ColumnElement[bool]] | None:
        """``selector`` as conditions on held rows; None when it can match none.

        The same rule as ``JobSelector.matches`` on ``held_record(row)``.
        """
        statuses = [
            status
            for status in (HeldStatus.SCHEDULED, HeldStatus.CANCELLED)
            if not selector.states or STATE_OF[status] in selector.states
        ]
        if selector.error_contains:
            # Only a cancelled held job has an error: the cancel's reason.
            statuses = [status for status in statuses if status is HeldStatus.CANCELLED]
        if not statuses:
            return None
        job = ScheduledJob
        where = [
            job.status.in_(statuses),
            *selector_clauses(
                selector,
                queue=job.queue,
                job_type=job.type,
                job_id=job.id,
                create_time=job.create_time,
                as_stored=lambda seconds: datetime.fromtimestamp(seconds, UTC),
                attributes=job.attributes,
            ),
        ]
        if selector.error_contains:
            # Case-sensitive, as JobSelector.matches (SQLite's LIKE is not).
            find = func.strpos if self._postgres else func.instr
            where.append(find(job.last_error, selector.error_contains) > 0)
        return where

    # Schedules ---------------------------------------------------------------

    async def create_schedule(self, spec: ScheduleSpec, now: datetime) -> Schedule:
        """Store a new schedule.

        Raises:
            ScheduleExistsError: the name is taken.
        """
        try:
            async with self._transaction() as session:
                taken = await session.scalar(select(Schedule.id).where(Schedule.name == spec.name))
                if taken is not None:
                    raise ScheduleExistsError(spec.name)
                row = new_schedule(spec, now)
                session.add(row)
        except IntegrityError:
            # Another gateway created it between our check and our insert.
            raise ScheduleExistsError(spec.name) from None
        return row

    async def update_schedule(
        self,
        name: str,
        change: Callable[[ScheduleSpec | None], ScheduleSpec],
        now: datetime,
        *,
        allow_missing: bool = False,
    ) -> tuple[Schedule, bool]:
        """Apply ``change`` to the schedule called ``name`` under a row lock.

        ``change`` gets the current spec (None when the schedule does not
        exist and ``allow_missing`` is set) and returns the new one; it may
        raise to abort. Returns the stored schedule and whether it was created.
        ``next_run_time`` is recomputed from ``now`` only when the timing
        (cron, interval, time zone or paused) changed.

        Raises:
            ScheduleNotFoundError: no such schedule and not ``allow_missing``.
        """
        try:
            return await self._update_schedule(name, change, now, allow_missing)
        except IntegrityError:
            # A concurrent register-or-update created it first: update it.
            return await self._update_schedule(name, change, now, allow_missing)

    async def _update_schedule(
        self,
        name: str,
        change: Callable[[ScheduleSpec | None], ScheduleSpec],
        now: datetime,
        allow_missing: bool,
    ) -> tuple[Schedule, bool]:
        async with self._transaction() as session:
            row = await session.scalar(
                locked(select(Schedule).where(Schedule.name == name), self._postgres)
            )
            if row is None:
                if not allow_missing:
                    raise ScheduleNotFoundError(name)
                row = new_schedule(change(None), now)
                session.add(row)
                return row, True
            old = spec_of(row)
            new = change(old)
            write_spec(row, new)
            if not new.same_timing(old):
                row.next_run_time = first_run(new, now)
            row.update_time = now
            return row, False

    async def get_schedule(self, name: str) -> Schedule:
        """Return the schedule called ``name``.

        Raises:
            ScheduleNotFoundError: no such schedule.
        """
        async with self._transaction() as session:
            row = await session.scalar(select(Schedule).where(Schedule.name == name))
        if row is None:
            raise ScheduleNotFoundError(name)
        return row

    async def list_schedules(self, after: str, limit: int) -> tuple[list[Schedule], bool]:
        """Return up to ``limit`` schedules named after ``after``, and whether more follow."""
        async with self._transaction() as session:
            rows = list(
                await session.scalars(
                    select(Schedule)
                    .where(Schedule.name > after)
                    .order_by(Schedule.name)
                    .limit(limit + 1)
                )
            )
        return rows[:limit], len(rows) > limit

    async def delete_schedule(self, name: str) -> bool:
        """Delete a schedule and its occurrences; False when there was none."""
        async with self._transaction() as session:
            deleted = await session.scalar(
                delete(Schedule).where(Schedule.name == name).returning(Schedule.id)
            )
        return deleted is not None

    async def set_paused(self, name: str, paused: bool, now: datetime) -> Schedule:
        """Pause or resume a schedule; resuming fires next at the first occurrence after now.

        Raises:
            ScheduleNotFoundError: no such schedule.
        """
        async with self._transaction() as session:
            row = await session.scalar(
                locked(select(Schedule).where(Schedule.name == name), self._postgres)
            )
            if row is None:
                raise ScheduleNotFoundError(name)
            if row.paused != paused:
                row.paused = paused
                row.next_run_time = first_run(spec_of(row), now)
                row.update_time = now
            return row
