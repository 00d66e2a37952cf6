"""The scheduler's tables, as SQLAlchemy 2 typed ORM models.

Three tables hold everything:

* ``scheduled_jobs``: one-time jobs held until their ``schedule_time``;
* ``schedules``: recurring jobs, each with a job template and a timetable;
* ``schedule_fires``: one row per occurrence a schedule fired. Its primary
  key ``(schedule_id, fire_time)`` is what makes an occurrence fire at most
  once, whichever gateway claims it and however often it is retried.

Schema changes: ``jobwire_schema`` holds one row, the schema version the
tables were created with (:data:`SCHEMA_VERSION`). The gateway creates
missing tables at start-up, upgrades an older database with the forward-only
steps of :data:`MIGRATIONS` (plain SQL run in one transaction at start-up),
and refuses to start on a database whose version it does not know. There are
no down-migrations, so back up the database before upgrading.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Enum,
    ForeignKey,
    Index,
    String,
    Text,
)
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from jobwire.gateway._db import TYPE_ANNOTATIONS
from jobwire.gateway.scheduler.timetable import MisfirePolicy

SCHEMA_VERSION = 3
"""Version of the tables below; see the module docstring."""
MIGRATIONS: dict[int, list[str]] = {
    # 1 -> 2: held jobs and schedules' jobs keep their priority.
    1: [
        "ALTER TABLE scheduled_jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 5",
        "ALTER TABLE schedules ADD COLUMN priority INTEGER NOT NULL DEFAULT 5",
    ],
    # 2 -> 3: held jobs keep their concurrency key (flow control).
    2: ["ALTER TABLE scheduled_jobs ADD COLUMN concurrency_key VARCHAR(256) NOT NULL DEFAULT ''"],
}
"""SQL taking the tables from each version to the next (see ``_db.open_schema``)."""


class HeldStatus(StrEnum):
    """Where a one-time job is in the scheduler."""

    SCHEDULED = "scheduled"
    """Waiting for its ``schedule_time``."""
    CLAIMED = "claimed"
    """A gateway is handing it to the provider; retried after ``claim_expire_time``."""
    ENQUEUED = "enqueued"
    """In the provider's queue; the provider answers for it now."""
    CANCELLED = "cancelled"
    """Cancelled before it was due."""


class FireStatus(StrEnum):
    """Where an occurrence of a schedule is."""

    PENDING = "pending"
    """Claimed; being handed to the provider, retried after ``claim_expire_time``."""
    ENQUEUED = "enqueued"
    """Its job is in the provider's queue."""
    FAILED = "failed"
    """The provider refused the job; see ``error``. Not retried."""


def _enum(cls: type[StrEnum]) -> Enum:
    # VARCHAR rather than a native enum type: adding a value later then needs
    # no ALTER TYPE, and SQLite and PostgreSQL store the same thing.
    return Enum(
        cls,
        native_enum=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(AsyncAttrs, DeclarativeBase):
    """Declarative base of the scheduler's tables."""

    type_annotation_map = TYPE_ANNOTATIONS


class SchemaVersion(Base):
    """The version of the scheduler's schema (one row)."""

    __tablename__ = "jobwire_schema"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class _JobFields:
    """Columns of a job, shared by held jobs and schedule templates."""

    queue: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(256))
    payload: Mapped[bytes]
    content_type: Mapped[str] = mapped_column(String(256))
    attributes: Mapped[dict[str, Any]]
    max_retries: Mapped[int]
    timeout: Mapped[float | None]
    """Seconds one attempt may run; None means the gateway's default."""
    priority: Mapped[int] = mapped_column(default=5, server_default="5")
    """0 to 9, higher first (schema version 2)."""


class ScheduledJob(_JobFields, Base):
    """A one-time job held until ``schedule_time``."""

    __tablename__ = "scheduled_jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The job's id, kept when it moves to the provider."""
    deduplication_key: Mapped[str] = mapped_column(String(256), default="")
    request_id: Mapped[str] = mapped_column(String(256), default="")
    schedule_time: Mapped[datetime]
    status: Mapped[HeldStatus] = mapped_column(_enum(HeldStatus), default=HeldStatus.SCHEDULED)
    claim_expire_time: Mapped[datetime | None]
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(Text, default="")
    concurrency_key: Mapped[str] = mapped_column(String(256), default="", server_default="")
    """The job's concurrency key (schema version 3)."""

    __table_args__ = (
        Index("ix_scheduled_jobs_due", "status", "schedule_time"),
        Index("ix_scheduled_jobs_claims", "status", "claim_expire_time"),
        Index("ix_scheduled_jobs_deduplication_key", "deduplication_key"),
        Index("ix_scheduled_jobs_request_id", "request_id"),
    )


class Schedule(_JobFields, Base):
    """A recurring job: a job template and when to enqueue it."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Surrogate key: a schedule deleted and created again under the same
    name is a new schedule whose occurrences do not collide with the old ones."""
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    cron: Mapped[str | None] = mapped_column(String(256))
    interval_seconds: Mapped[float | None]
    time_zone: Mapped[str] = mapped_column(String(64), default="UTC")
    misfire_policy: Mapped[MisfirePolicy] = mapped_column(
        _enum(MisfirePolicy), default=MisfirePolicy.SKIP
    )
    paused: Mapped[bool] = mapped_column(default=False)
    next_run_time: Mapped[datetime | None]
    """None while paused."""
    last_run_time: Mapped[datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    last_job_id: Mapped[str] = mapped_column(String(64), default="")
    create_time: Mapped[datetime]
    update_time: Mapped[datetime]

    __table_args__ = (Index("ix_schedules_due", "paused", "next_run_time"),)


class ScheduleFire(Base):
    """One occurrence of a schedule that was claimed for firing."""

    __tablename__ = "schedule_fires"

    schedule_id: Mapped[str] = mapped_column(
        ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True
    )
    fire_time: Mapped[datetime] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[FireStatus] = mapped_column(_enum(FireStatus), default=FireStatus.PENDING)
    claim_expire_time: Mapped[datetime | None]
    error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_schedule_fires_claims", "status", "claim_expire_time"),)
