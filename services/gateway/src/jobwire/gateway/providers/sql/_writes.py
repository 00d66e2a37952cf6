"""Writes to ``<prefix>jobs``: each call is one transaction, each batch one statement.

* An ``EnqueueJobs`` is one transaction: the lookups the dedup rule needs,
  then one multi-row ``INSERT``, then one ``NOTIFY``. It is answered only
  after the commit. Two gateways inserting one deduplication key at once
  collide on the partial unique index; the loser reads the winner's job.
* The endings of one frame (acks, nacks) are one ``UPDATE … FROM
  unnest(arrays)`` (SQLite: ``FROM (VALUES …)``) fenced by attempt and
  state, committed asynchronously on PostgreSQL: a lost ack is a
  redelivery, which at-least-once allows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    Double,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    and_,
    cast,
    column,
    insert,
    or_,
    select,
    text,
    update,
    values,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from jobwire.gateway._db import error_json
from jobwire.gateway._dedup import DedupRule, admit_again, lookups
from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway.providers.sql._dialect import Sql
from jobwire.gateway.providers.sql._handover import Handover
from jobwire.gateway.providers.sql._rows import insert_row, record_of
from jobwire.gateway.providers.sql._tables import PROCESSING, UNFINISHED

# The columns of an ending and their PostgreSQL types (for unnest).
ENDING_COLUMNS = {
    "k_id": "varchar",
    "k_attempt": "integer",
    "k_state": "smallint",
    "k_update_time": "float8",
    "k_end_time": "float8",
    "k_schedule_time": "float8",
    "k_run_at": "float8",
    "k_last_error": "json",
    "k_result": "bytea",
    "k_result_content_type": "varchar",
}


def endings_statement(jobs: str, unnested: str) -> str:
    """The ``UPDATE … FROM unnest(…)`` of ended attempts; ``unnested``: its arrays.

    Fenced by attempt and state; the same ending written again finds itself
    (a transaction whose commit was not confirmed may simply run again).
    """
    names = ", ".join(ENDING_COLUMNS)
    return (
        f"UPDATE {jobs} AS j SET state = e.k_state, update_time = e.k_update_time, "
        "end_time = e.k_end_time, schedule_time = e.k_schedule_time, run_at = e.k_run_at, "
        "last_error = e.k_last_error, result = e.k_result, "
        "result_content_type = e.k_result_content_type, gateway_id = NULL "
        f"FROM unnest({unnested}) AS e({names}) "
        f"WHERE j.id = e.k_id AND j.attempt = e.k_attempt AND (j.state = {PROCESSING} "
        "OR (j.state = e.k_state AND j.update_time = e.k_update_time)) RETURNING j.id"
    )


_UNFINISHED = f"state IN ({', '.join(str(s) for s in UNFINISHED)})"


class Writes:
    """The provider's writes.

    Args:
        sql: the database.
        dedup: the deduplication rule.
        flowing: the queues under flow control, whose slots an ending or a
            cancel frees (those wake every gateway's claims of the queue).
        handover: stores the jobs of inserts without keys on PostgreSQL (parked streams take some).
    """

    def __init__(
        self,
        sql: Sql,
        dedup: DedupRule,
        flowing: Callable[[], Collection[str]],
        handover: Handover,
    ) -> None:
        self._sql = sql
        self._dedup = dedup
        self._flowing = flowing
        self._handover = handover
        c = sql.jobs.c
        self._c = c
        unnested = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in ENDING_COLUMNS.items())
        self._unnested = text(endings_statement(sql.jobs.name, unnested))

    async def insert(
        self, jobs: Sequence[NewJob], now: float
    ) -> tuple[list[tuple[JobRecord, bool]], set[str]]:
        """Store new jobs; return each stored job and whether it was a duplicate.

        Also returns the queues of the jobs stored waiting (the others went
        to parked streams of this gateway, see ._handover). Request ids are
        looked up only when the insert collided on one: the first try
        assumes a request is new (the SDKs give every request an id; only a
        retried one was seen), and the unique index says otherwise.
        """
        tries = 0

        async def once() -> tuple[list[tuple[JobRecord, bool]], set[str]]:
            nonlocal tries
            tries += 1
            return await self._insert(jobs, now, requests_seen=tries > 1)

        return await admit_again(once, "queue")

    async def _insert(
        self, jobs: Sequence[NewJob], now: float, *, requests_seen: bool
    ) -> tuple[list[tuple[JobRecord, bool]], set[str]]:
        direct = self._sql.direct
        if direct is not None and not requests_seen and not any(j.deduplication_key for j in jobs):
            # Nothing to look up: one statement (the rows and the NOTIFY).
            results = self._dedup.admit(
                jobs, now, lambda new: JobRecord.create(new, now), by_request={}, by_key={}
            )
            fresh = [
                (record, new.request_id)
                for new, (record, duplicate) in zip(jobs, results, strict=True)
                if not duplicate
            ]
            if not fresh:
                return results, set()
            return results, await self._handover.insert(self._sql, direct, fresh, now)
        async with self._sql.write() as conn:
            by_request, by_key = await self._holders(conn, jobs, now, requests_seen)
            results = self._dedup.admit(
                jobs,
                now,
                lambda new: JobRecord.create(new, now),
                by_request=by_request,
                by_key=by_key,
            )
            rows = [
                insert_row(record, new.request_id)
                for new, (record, duplicate) in zip(jobs, results, strict=True)
                if not duplicate
            ]
            queues = {row["queue"] for row in rows}
            if rows:
                # executemany: one prepared statement for the batch's rows
                # (a 1,000-row VALUES list costs more to compile than to run).
                await conn.execute(insert(self._sql.jobs), rows)
                await self._sql.notify_ready(conn, queues)
        return results, queues

    async def _holders(
        self, conn: AsyncConnection, jobs: Sequence[NewJob], now: float, requests_seen: bool
    ) -> tuple[dict[str, JobRecord], dict[str, JobRecord]]:
        request_ids, keys = lookups(jobs)
        by_request: dict[str, JobRecord] = {}
        if request_ids and requests_seen:
            query = select(self._sql.jobs).where(self._c.request_id.in_(request_ids))
            for row in (await conn.execute(query)).mappings():
                by_request[row["request_id"]] = record_of(row, now)
        by_key = await key_holders(self._sql, conn, keys, now, self._dedup) if keys else {}
        return by_request, by_key

    async def apply_endings(
        self, conn: AsyncConnection, records: Sequence[JobRecord], attempts: Sequence[int]
    ) -> set[str]:
        """Write the records of ended attempts, each only if still at ``attempts[i]``.

        Returns the ids written (a job another gateway took back is not). The
        same write again finds its own ending and counts it as written: a
        transaction whose commit was not confirmed (the connection died) can
        simply be run again.
        """
        rows = ending_rows(records, attempts)
        if self._sql.postgres:
            return await self._apply_unnested(conn, rows)
        table = values(
            column("k_id", String),
            column("k_attempt", Integer),
            column("k_state", SmallInteger),
            column("k_update_time", Double),
            column("k_end_time", Double),
            column("k_schedule_time", Double),
            column("k_run_at", Double),
            column("k_last_error", JSON),
            column("k_result", LargeBinary),
            column("k_result_content_type", String),
            name="ended",
        ).data([tuple(row.values()) for row in rows])
        # As a CTE: SQLite takes no column names after ``(VALUES …) AS ended``.
        # A None renders as an untyped NULL there, hence the casts of nullable
        # columns on PostgreSQL (on SQLite a cast to JSON would make a number).
        typed = cast if self._sql.postgres else _as_is
        ended = table.cte("ended")
        c, v = self._c, ended.c
        statement = (
            update(self._sql.jobs)
            .where(
                c.id == v.k_id,
                c.attempt == v.k_attempt,
                or_(
                    c.state == PROCESSING,
                    and_(c.state == v.k_state, c.update_time == v.k_update_time),
                ),
            )
            .values(
                state=v.k_state,
                update_time=v.k_update_time,
                end_time=typed(v.k_end_time, Double),
                schedule_time=typed(v.k_schedule_time, Double),
                run_at=v.k_run_at,
                last_error=typed(v.k_last_error, JSON),
                result=typed(v.k_result, LargeBinary),
                result_content_type=v.k_result_content_type,
                gateway_id=None,
            )
            .returning(c.id)
        )
        return set((await conn.scalars(statement)).all())

    async def _apply_unnested(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> set[str]:
        # One array per column: the same statement text whatever the number
        # of rows, so it is compiled and prepared once (a VALUES list is not).
        arrays = {name: [row[name] for row in rows] for name in ENDING_COLUMNS}
        arrays["k_last_error"] = [
            None if error is None else json.dumps(error) for error in arrays["k_last_error"]
        ]
        found = await conn.execute(self._unnested, arrays)
        return {job_id for (job_id,) in found}

    async def settle(self, records: Sequence[JobRecord]) -> set[str]:
        """Record how this gateway's leases ended (records already updated); ids written.

        Tried again while the database is away (:meth:`Sql.outlast`).
        """
        return await self._sql.outlast(lambda: self._settle(records), "recording lease endings")

    async def _settle(self, records: Sequence[JobRecord]) -> set[str]:
        direct = self._sql.direct
        flowing = self._flowing()
        if direct is not None and all(r.state.is_terminal for r in records):
            # Nothing becomes ready: one statement on its own, with a NOTIFY when
            # it frees slots of flow control.
            freed = {r.queue for r in records if r.queue in flowing}
            sql = self._sql
            notify = (sql.ready_channel, sql.ready_payload(freed)) if freed else None
            return await direct.end(ending_rows(records, [r.attempt for r in records]), notify)
        async with self._sql.write(async_commit=True) as conn:
            written = await self.apply_endings(conn, records, [r.attempt for r in records])
            again = {
                r.queue
                for r in records
                if r.id in written and (not r.state.is_terminal or r.queue in flowing)
            }
            await self._sql.notify_ready(conn, again)
        return written

    async def cancel(self, job_id: str, message: str, now: float) -> JobRecord | None:
        """Cancel an unfinished job; the gateway leasing it elsewhere is notified."""
        c = self._c
        async with self._sql.write() as conn:
            query = select(self._sql.jobs).where(c.id == job_id).with_for_update()
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                return None
            record = record_of(row, now)
            if record.state.is_terminal:
                return record
            record.cancel(message, now)
            await conn.execute(
                update(self._sql.jobs)
                .where(c.seq == row["seq"])
                .values(
                    state=record.state.value,
                    update_time=now,
                    end_time=now,
                    last_error=error_json(record),
                    gateway_id=None,
                )
            )
            owner = row["gateway_id"]
            if row["state"] == PROCESSING and owner and owner != self._sql.gateway_id:
                await self._sql.notify_cancel(conn, owner, job_id, f"job cancelled: {message}")
            if row["state"] == PROCESSING and row["queue"] in self._flowing():
                await self._sql.notify_ready(conn, {row["queue"]})  # a slot is free
        return record

    async def save_progress(self, record: JobRecord) -> None:
        """Store a leased job's progress (tried again while the database is away)."""
        await self._sql.outlast(lambda: self._save_progress(record), "storing progress")

    async def _save_progress(self, record: JobRecord) -> None:
        assert record.progress is not None
        c = self._c
        async with self._sql.write(async_commit=True) as conn:
            await conn.execute(
                update(self._sql.jobs)
                .where(c.id == record.id, c.attempt == record.attempt, c.state == PROCESSING)
                .values(
                    progress=record.progress.SerializeToString(), update_time=record.update_time
                )
            )

    async def put_back(self, records: Collection[JobRecord]) -> None:
        """Undo claims nobody received (the waiting stream went away meanwhile)."""
        c = self._c
        async with self._sql.write() as conn:
            await conn.execute(
                update(self._sql.jobs)
                .where(
                    c.id.in_([r.id for r in records]),
                    c.state == PROCESSING,
                    c.gateway_id == self._sql.gateway_id,
                )
                .values(
                    state=JobState.PENDING.value,
                    attempt=c.attempt - 1,
                    gateway_id=None,
                    worker_id="",
                )
            )
            await self._sql.notify_ready(conn, {r.queue for r in records})


def ending_rows(records: Sequence[JobRecord], attempts: Sequence[int]) -> list[dict[str, Any]]:
    """The values of the endings statement, one dict a record (see ``ENDING_COLUMNS``)."""
    return [
        {
            "k_id": r.id,
            "k_attempt": attempt,
            "k_state": r.state.value,
            "k_update_time": r.update_time,
            "k_end_time": r.end_time,
            "k_schedule_time": r.schedule_time,
            "k_run_at": r.schedule_time
            if r.state is JobState.FAILED and r.schedule_time is not None
            else r.update_time,
            "k_last_error": error_json(r),
            "k_result": r.result,
            "k_result_content_type": r.result_content_type,
        }
        for r, attempt in zip(records, attempts, strict=True)
    ]


def _as_is(value: Any, _type: Any) -> Any:
    return value


async def key_holders(
    sql: Sql, conn: AsyncConnection, keys: Collection[str], now: float, dedup: DedupRule
) -> dict[str, JobRecord]:
    """The jobs that hold ``keys`` at ``now``: unfinished, or finished within the window."""
    c = sql.jobs.c
    held = text(_UNFINISHED)
    if dedup.window > 0:
        held = or_(held, c.end_time > now - dedup.window)  # type: ignore[assignment]
    query = select(sql.jobs).where(c.deduplication_key.in_(keys), held)
    found: dict[str, JobRecord] = {}
    for row in (await conn.execute(query)).mappings():
        record = record_of(row, now)
        current = found.get(record.deduplication_key)
        # The unfinished holder first, else the one that finished last.
        if current is None or _newer_holder(record, current):
            found[record.deduplication_key] = record
    return {key: job for key, job in found.items() if dedup.holds(job, now)}


def _newer_holder(record: JobRecord, current: JobRecord) -> bool:
    if not record.state.is_terminal:
        return True
    if not current.state.is_terminal:
        return False
    return (record.end_time or 0.0) > (current.end_time or 0.0)
