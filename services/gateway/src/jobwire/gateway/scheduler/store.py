"""The scheduler's async repository: every SQL statement the scheduler runs.

Claiming due work is the one place where the two databases differ:

* PostgreSQL: due rows are selected ``FOR UPDATE SKIP LOCKED`` inside the
  claiming transaction, so any number of gateways can claim at once and each
  row goes to exactly one of them, without waiting on each other.
* SQLite has no row locks (SQLAlchemy silently drops ``FOR UPDATE``). Claims
  are compare-and-set statements instead: ``UPDATE … WHERE status =
  'scheduled' … RETURNING`` for one-time jobs and ``UPDATE … WHERE
  next_run_time = :seen`` for schedules. SQLite allows one writer at a time,
  so this is safe, but only one gateway per SQLite file is supported.

Claimed work is handed to the provider *after* the claiming transaction
commits and confirmed in a second one. A claim carries an expiry: if its
gateway dies before confirming, another gateway hands the same job over again
once the claim expires, with the same job id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, delete, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from jobwire.gateway._db import AWAY, OUR_FAULT, brief, create_engine, open_schema
from jobwire.gateway._dedup import DedupRule, lookups
from jobwire.gateway._errors import (
    ScheduleExistsError,
    ScheduleNotFoundError,
    UnavailableError,
)
from jobwire.gateway._models import Failure, JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway.scheduler.models import (
    SCHEMA_VERSION,
    Base,
    FireStatus,
    HeldStatus,
    Schedule,
    ScheduledJob,
    ScheduleFire,
    SchemaVersion,
)
from jobwire.gateway.scheduler.spec import JobTemplate, ScheduleSpec
from jobwire.gateway.scheduler.timetable import fire_job_id, plan

logger = logging.getLogger("jobwire.gateway.scheduler")

# Key of the PostgreSQL advisory lock that serializes table creation when
# several gateways start at once.
_SCHEMA_LOCK = 0x6A6F62776972


@dataclass(frozen=True, slots=True)
class Handoff:
    """A claimed job on its way to the provider."""

    job: NewJob
    """The job, with its preassigned id and no ``schedule_time``."""
    schedule_id: str = ""
    """For an occurrence of a schedule: the schedule's id; empty for a one-time job."""
    fire_time: datetime | None = None
    """For an occurrence of a schedule: the occurrence."""


class SchedulerStore:
    """Async access to the scheduler's tables on SQLite or PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._postgres = engine.dialect.name == "postgresql"

    @classmethod
    def from_url(cls, url: str) -> SchedulerStore:
        """Return a store on the database at ``url``."""
        return cls(create_engine(url, what="scheduler.database_url"))

    async def open(self) -> None:
        """Create missing tables and check the schema version.

        Raises:
            RuntimeError: the database is unreachable or holds another schema version.
        """
        await open_schema(
            self.engine,
            Base.metadata,
            SchemaVersion,
            SCHEMA_VERSION,
            lock_key=_SCHEMA_LOCK,
            what="scheduler",
        )

    async def close(self) -> None:
        """Close every connection."""
        await self.engine.dispose()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction; a lost or refused database is UNAVAILABLE."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except OUR_FAULT:
            raise
        except AWAY as error:
            # Transient, so callers may retry.
            raise UnavailableError(f"scheduler database unavailable: {brief(error)}") from error

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
                row = _new_held(new, now)
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
            for status, state in _STATE_OF.items()
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
        if where.queue:
            query = query.where(ScheduledJob.queue == where.queue)
        if where.type:
            query = query.where(ScheduledJob.type == where.type)
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
            .where(ScheduledJob.status.in_(list(_STATE_OF)))
            .group_by(ScheduledJob.queue, ScheduledJob.status)
        )
        if queue is not None:
            query = query.where(ScheduledJob.queue == queue)
        counts: dict[str, dict[JobState, int]] = {}
        async with self._transaction() as session:
            for name, status, count in await session.execute(query):
                by_state = counts.setdefault(name, {})
                state = _STATE_OF[status]
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
                row = _new_schedule(spec, now)
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
                _locked(select(Schedule).where(Schedule.name == name), self._postgres)
            )
            if row is None:
                if not allow_missing:
                    raise ScheduleNotFoundError(name)
                row = _new_schedule(change(None), now)
                session.add(row)
                return row, True
            old = spec_of(row)
            new = change(old)
            _write_spec(row, new)
            if not new.same_timing(old):
                row.next_run_time = _first_run(new, now)
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
                _locked(select(Schedule).where(Schedule.name == name), self._postgres)
            )
            if row is None:
                raise ScheduleNotFoundError(name)
            if row.paused != paused:
                row.paused = paused
                row.next_run_time = _first_run(spec_of(row), now)
                row.update_time = now
            return row

    # The runner's side -------------------------------------------------------

    async def claim(
        self, now: datetime, *, limit: int, lease: timedelta, grace: timedelta
    ) -> tuple[list[Handoff], bool]:
        """Claim due work for ``lease``: one-time jobs and schedule occurrences.

        Each due schedule moves on to its next occurrence in the same
        transaction that records the occurrence it fires, whether or not the
        provider later accepts the job. Returns the hand-offs and whether
        more work may be due already (a batch was full).
        """
        expire = now + lease
        async with self._transaction() as session:
            jobs = await self._claim_held(session, now, expire, limit)
            fires, full = await self._claim_schedules(session, now, expire, limit, grace)
            stale = await self._reclaim_fires(session, now, expire, limit)
        more = len(jobs) >= limit or full or len(stale) >= limit
        return [*jobs, *fires, *stale], more

    async def _claim_held(
        self, session: AsyncSession, now: datetime, expire: datetime, limit: int
    ) -> list[Handoff]:
        due = (
            select(ScheduledJob.id)
            .where(ScheduledJob.status == HeldStatus.SCHEDULED, ScheduledJob.schedule_time <= now)
            .order_by(ScheduledJob.schedule_time)
            .limit(limit)
        )
        abandoned = (
            select(ScheduledJob.id)
            .where(ScheduledJob.status == HeldStatus.CLAIMED, ScheduledJob.claim_expire_time < now)
            .limit(limit)
        )
        claimed: list[ScheduledJob] = []
        for ids, still_due in (
            (due, ScheduledJob.status == HeldStatus.SCHEDULED),
            (
                abandoned,
                (ScheduledJob.status == HeldStatus.CLAIMED)
                & (ScheduledJob.claim_expire_time < now),
            ),
        ):
            # The outer condition repeats the inner one: on SQLite it is the
            # compare-and-set; on PostgreSQL the locked subquery already holds.
            stmt = (
                update(ScheduledJob)
                .where(ScheduledJob.id.in_(_locked(ids, self._postgres, skip=True)), still_due)
                .values(status=HeldStatus.CLAIMED, claim_expire_time=expire, update_time=now)
                .returning(ScheduledJob)
                .execution_options(synchronize_session=False)
            )
            claimed.extend(await session.scalars(stmt))
        return [Handoff(_held_job(row)) for row in claimed]

    async def _claim_schedules(
        self, session: AsyncSession, now: datetime, expire: datetime, limit: int, grace: timedelta
    ) -> tuple[list[Handoff], bool]:
        due = (
            select(Schedule)
            .where(Schedule.paused.is_(False), Schedule.next_run_time <= now)
            .order_by(Schedule.next_run_time)
            .limit(limit)
        )
        rows = list(await session.scalars(_locked(due, self._postgres, skip=True)))
        handoffs: list[Handoff] = []
        for row in rows:
            seen = row.next_run_time
            assert seen is not None
            spec = spec_of(row)
            try:
                decision = plan(spec.timetable(), seen, now, row.misfire_policy, grace)
            except ValueError as error:
                # Cannot happen for a validated spec; never let one schedule
                # stop the runner for every other.
                logger.error("schedule %r cannot compute its next run: %s", row.name, error)
                await session.execute(
                    update(Schedule)
                    .where(Schedule.id == row.id)
                    .values(next_run_time=None, last_error=f"timetable error: {error}")
                )
                continue
            advanced = await session.scalar(
                update(Schedule)
                .where(Schedule.id == row.id, Schedule.next_run_time == seen)
                .values(next_run_time=decision.next_run_time)
                .returning(Schedule.id)
                .execution_options(synchronize_session=False)
            )
            if advanced is None:
                continue  # another gateway moved it first (SQLite compare-and-set)
            if decision.fire_time is None:
                logger.info(
                    "schedule %r missed its run at %s; skipping to %s (misfire policy skip)",
                    row.name,
                    seen.isoformat(),
                    decision.next_run_time.isoformat(),
                )
                continue
            job_id = fire_job_id(row.id, decision.fire_time)
            recorded = await session.scalar(
                self._insert(ScheduleFire)
                .values(
                    schedule_id=row.id,
                    fire_time=decision.fire_time,
                    job_id=job_id,
                    status=FireStatus.PENDING,
                    claim_expire_time=expire,
                    error="",
                )
                .on_conflict_do_nothing()
                .returning(ScheduleFire.job_id)
            )
            if recorded is None:
                continue  # this occurrence already fired
            job = spec.template.new_job(job_id, row.name)
            handoffs.append(Handoff(job, row.id, decision.fire_time))
        return handoffs, len(rows) >= limit

    async def _reclaim_fires(
        self, session: AsyncSession, now: datetime, expire: datetime, limit: int
    ) -> list[Handoff]:
        """Take over occurrences whose gateway claimed them and never confirmed."""
        abandoned = (
            select(ScheduleFire, Schedule)
            .join(Schedule)
            .where(ScheduleFire.status == FireStatus.PENDING, ScheduleFire.claim_expire_time < now)
            .limit(limit)
        )
        if self._postgres:
            abandoned = abandoned.with_for_update(skip_locked=True, of=ScheduleFire)
        handoffs: list[Handoff] = []
        for fire, schedule in await session.execute(abandoned):
            taken = await session.scalar(
                update(ScheduleFire)
                .where(
                    ScheduleFire.schedule_id == fire.schedule_id,
                    ScheduleFire.fire_time == fire.fire_time,
                    ScheduleFire.claim_expire_time == fire.claim_expire_time,
                )
                .values(claim_expire_time=expire)
                .returning(ScheduleFire.job_id)
                .execution_options(synchronize_session=False)
            )
            if taken is not None:
                job = _template_of(schedule).new_job(fire.job_id, schedule.name)
                handoffs.append(Handoff(job, fire.schedule_id, fire.fire_time))
        return handoffs

    async def confirm(self, handoffs: Sequence[Handoff], now: datetime) -> list[str]:
        """Record that the provider accepted ``handoffs``.

        Returns the ids of one-time jobs that were cancelled while they were
        being handed over; the caller cancels them in the provider.
        """
        job_ids = [h.job.id for h in handoffs if not h.schedule_id]
        fires = [h for h in handoffs if h.schedule_id]
        cancelled: list[str] = []
        async with self._transaction() as session:
            if job_ids:
                moved = set(
                    await session.scalars(
                        update(ScheduledJob)
                        .where(
                            ScheduledJob.id.in_(job_ids),
                            ScheduledJob.status == HeldStatus.CLAIMED,
                        )
                        .values(
                            status=HeldStatus.ENQUEUED,
                            claim_expire_time=None,
                            update_time=now,
                            last_error="",
                        )
                        .returning(ScheduledJob.id)
                        .execution_options(synchronize_session=False)
                    )
                )
                if len(moved) < len(job_ids):
                    missing = [job_id for job_id in job_ids if job_id not in moved]
                    cancelled = list(
                        await session.scalars(
                            select(ScheduledJob.id).where(
                                ScheduledJob.id.in_(missing),
                                ScheduledJob.status == HeldStatus.CANCELLED,
                            )
                        )
                    )
            if fires:
                await session.execute(
                    update(ScheduleFire)
                    .where(_fire_keys(fires), ScheduleFire.status == FireStatus.PENDING)
                    .values(status=FireStatus.ENQUEUED, claim_expire_time=None)
                    .execution_options(synchronize_session=False)
                )
                for fire in fires:
                    assert fire.fire_time is not None
                    await session.execute(
                        update(Schedule)
                        .where(
                            Schedule.id == fire.schedule_id,
                            or_(
                                Schedule.last_run_time.is_(None),
                                Schedule.last_run_time <= fire.fire_time,
                            ),
                        )
                        .values(
                            last_run_time=fire.fire_time, last_job_id=fire.job.id, last_error=""
                        )
                        .execution_options(synchronize_session=False)
                    )
        return cancelled

    async def record_failure(self, handoffs: Sequence[Handoff], error: str, now: datetime) -> None:
        """Record that the provider refused ``handoffs``.

        One-time jobs stay claimed and are retried when the claim expires.
        Occurrences are not retried: the schedule keeps ``last_error`` and
        fires again at its next occurrence.
        """
        job_ids = [h.job.id for h in handoffs if not h.schedule_id]
        fires = [h for h in handoffs if h.schedule_id]
        async with self._transaction() as session:
            if job_ids:
                await session.execute(
                    update(ScheduledJob)
                    .where(ScheduledJob.id.in_(job_ids))
                    .values(last_error=error, update_time=now)
                    .execution_options(synchronize_session=False)
                )
            if fires:
                await session.execute(
                    update(ScheduleFire)
                    .where(_fire_keys(fires))
                    .values(status=FireStatus.FAILED, claim_expire_time=None, error=error)
                    .execution_options(synchronize_session=False)
                )
                await session.execute(
                    update(Schedule)
                    .where(Schedule.id.in_({h.schedule_id for h in fires}))
                    .values(last_error=error)
                    .execution_options(synchronize_session=False)
                )

    async def next_due_time(self) -> datetime | None:
        """Return the earliest time any work becomes due (claims expiring included)."""
        held = select(func.min(ScheduledJob.schedule_time)).where(
            ScheduledJob.status == HeldStatus.SCHEDULED
        )
        held_claims = select(func.min(ScheduledJob.claim_expire_time)).where(
            ScheduledJob.status == HeldStatus.CLAIMED
        )
        schedules = select(func.min(Schedule.next_run_time)).where(Schedule.paused.is_(False))
        fire_claims = select(func.min(ScheduleFire.claim_expire_time)).where(
            ScheduleFire.status == FireStatus.PENDING
        )
        query = select(
            held.scalar_subquery(),
            held_claims.scalar_subquery(),
            schedules.scalar_subquery(),
            fire_claims.scalar_subquery(),
        )
        async with self._transaction() as session:
            row = (await session.execute(query)).one()
        times = [value for value in row if value is not None]
        return min(times) if times else None

    async def prune(self, before: datetime) -> int:
        """Delete finished one-time jobs due and occurrences fired before ``before``.

        Returns how many rows went. An occurrence row is only needed while a
        gateway could still claim it, which ends once ``next_run_time`` moved
        past it; keeping a day of them is for operators.
        """
        async with self._transaction() as session:
            jobs = await session.execute(
                delete(ScheduledJob)
                .where(
                    ScheduledJob.status.in_([HeldStatus.ENQUEUED, HeldStatus.CANCELLED]),
                    ScheduledJob.schedule_time < before,
                )
                .returning(ScheduledJob.id)
            )
            fires = await session.execute(
                delete(ScheduleFire)
                .where(ScheduleFire.status != FireStatus.PENDING, ScheduleFire.fire_time < before)
                .returning(ScheduleFire.job_id)
            )
            return len(jobs.all()) + len(fires.all())

    def _insert(self, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
        if self._postgres:
            return postgresql.insert(model)
        return sqlite.insert(model)


_Select = TypeVar("_Select", bound=Select[Any])


def _locked(stmt: _Select, postgres: bool, *, skip: bool = False) -> _Select:
    # SQLite would silently ignore FOR UPDATE; say so in the code instead.
    return stmt.with_for_update(skip_locked=skip) if postgres else stmt


def _fire_keys(fires: Sequence[Handoff]) -> Any:
    return tuple_(ScheduleFire.schedule_id, ScheduleFire.fire_time).in_(
        [(h.schedule_id, h.fire_time) for h in fires]
    )


# The state clients see of each status the scheduler answers for; an enqueued
# job is the provider's.
_STATE_OF = {
    HeldStatus.SCHEDULED: JobState.SCHEDULED,
    HeldStatus.CLAIMED: JobState.SCHEDULED,
    HeldStatus.CANCELLED: JobState.CANCELLED,
}
# A job held here keeps its key until handed to the queue, which takes it over.
_RULE = DedupRule()


def _new_held(new: NewJob, now: datetime) -> ScheduledJob:
    assert new.schedule_time is not None
    return ScheduledJob(
        id=new.id or uuid.uuid4().hex,
        queue=new.queue,
        type=new.type,
        payload=new.payload,
        content_type=new.content_type,
        attributes=new.attributes,
        max_retries=new.max_retries,
        timeout=new.timeout,
        deduplication_key=new.deduplication_key,
        request_id=new.request_id,
        schedule_time=datetime.fromtimestamp(new.schedule_time, UTC),
        status=HeldStatus.SCHEDULED,
        create_time=now,
        update_time=now,
        last_error="",
    )


def held_record(row: ScheduledJob) -> JobRecord:
    """Return the job record of a job the scheduler holds (or cancelled)."""
    cancelled = row.status is HeldStatus.CANCELLED
    update_time = row.update_time.timestamp()
    return JobRecord(
        id=row.id,
        queue=row.queue,
        type=row.type,
        payload=row.payload,
        content_type=row.content_type,
        attributes=dict(row.attributes),
        max_retries=row.max_retries,
        timeout=row.timeout,
        deduplication_key=row.deduplication_key,
        create_time=row.create_time.timestamp(),
        state=JobState.CANCELLED if cancelled else JobState.SCHEDULED,
        schedule_time=row.schedule_time.timestamp(),
        update_time=update_time,
        end_time=update_time if cancelled else None,
        last_error=(
            Failure(row.last_error, "CANCELLED", retryable=False, time=update_time)
            if cancelled
            else None
        ),
    )


def _held_job(row: ScheduledJob) -> NewJob:
    return NewJob(
        queue=row.queue,
        type=row.type,
        payload=row.payload,
        content_type=row.content_type,
        attributes=dict(row.attributes),
        max_retries=row.max_retries,
        timeout=row.timeout,
        deduplication_key=row.deduplication_key,
        schedule_time=None,
        request_id=f"jobwire-scheduler:{row.id}",
        id=row.id,
    )


def _template_of(row: Schedule) -> JobTemplate:
    return JobTemplate(
        type=row.type,
        queue=row.queue,
        payload=row.payload,
        content_type=row.content_type,
        attributes=dict(row.attributes),
        max_retries=row.max_retries,
        timeout=row.timeout,
    )


def spec_of(row: Schedule) -> ScheduleSpec:
    """Return the client-settable fields of a stored schedule."""
    return ScheduleSpec(
        name=row.name,
        template=_template_of(row),
        cron=row.cron,
        interval=timedelta(seconds=row.interval_seconds) if row.interval_seconds else None,
        time_zone=row.time_zone,
        misfire_policy=row.misfire_policy,
        paused=row.paused,
        description=row.description,
    )


def _write_spec(row: Schedule, spec: ScheduleSpec) -> None:
    template = spec.template
    row.name = spec.name
    row.queue = template.queue
    row.type = template.type
    row.payload = template.payload
    row.content_type = template.content_type
    row.attributes = dict(template.attributes)
    row.max_retries = template.max_retries
    row.timeout = template.timeout
    row.cron = spec.cron
    row.interval_seconds = spec.interval.total_seconds() if spec.interval else None
    row.time_zone = spec.time_zone
    row.misfire_policy = spec.misfire_policy
    row.paused = spec.paused
    row.description = spec.description


def _new_schedule(spec: ScheduleSpec, now: datetime) -> Schedule:
    row = Schedule(
        id=uuid.uuid4().hex,
        next_run_time=_first_run(spec, now),
        last_run_time=None,
        last_error="",
        last_job_id="",
        create_time=now,
        update_time=now,
    )
    _write_spec(row, spec)
    return row


def _first_run(spec: ScheduleSpec, now: datetime) -> datetime | None:
    return None if spec.paused else spec.timetable().next_after(now)
