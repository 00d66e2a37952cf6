"""The runner's side of the store: claiming due work and confirming its hand-over.

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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from jobwire.gateway._models import NewJob
from jobwire.gateway.scheduler.database import StoreBase, locked
from jobwire.gateway.scheduler.models import (
    FireStatus,
    HeldStatus,
    Schedule,
    ScheduledJob,
    ScheduleFire,
)
from jobwire.gateway.scheduler.rows import held_job, spec_of, template_of
from jobwire.gateway.scheduler.timetable import fire_job_id, plan

logger = logging.getLogger("jobwire.gateway.scheduler")


@dataclass(frozen=True, slots=True)
class Handoff:
    """A claimed job on its way to the provider."""

    job: NewJob
    """The job, with its preassigned id (an occurrence's ``schedule_time`` is the past)."""
    schedule_id: str = ""
    """For an occurrence of a schedule: the schedule's id; empty for a one-time job."""
    fire_time: datetime | None = None
    """For an occurrence of a schedule: the occurrence."""


class Firing(StoreBase):
    """Claim, confirm and clean up the work that is due."""

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
                .where(ScheduledJob.id.in_(locked(ids, self._postgres, skip=True)), still_due)
                .values(status=HeldStatus.CLAIMED, claim_expire_time=expire, update_time=now)
                .returning(ScheduledJob)
                .execution_options(synchronize_session=False)
            )
            claimed.extend(await session.scalars(stmt))
        return [Handoff(held_job(row)) for row in claimed]

    async def _claim_schedules(
        self, session: AsyncSession, now: datetime, expire: datetime, limit: int, grace: timedelta
    ) -> tuple[list[Handoff], bool]:
        due = (
            select(Schedule)
            .where(Schedule.paused.is_(False), Schedule.next_run_time <= now)
            .order_by(Schedule.next_run_time)
            .limit(limit)
        )
        rows = list(await session.scalars(locked(due, self._postgres, skip=True)))
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
            job = spec.template.new_job(job_id, row.name, decision.fire_time)
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
                job = template_of(schedule).new_job(fire.job_id, schedule.name, fire.fire_time)
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


def _fire_keys(fires: Sequence[Handoff]) -> Any:
    return tuple_(ScheduleFire.schedule_id, ScheduleFire.fire_time).in_(
        [(h.schedule_id, h.fire_time) for h in fires]
    )
