"""The SQS provider's job records on SQLite and PostgreSQL, written by several gateways."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._models import JobRecord, JobState
from jobwire.gateway.providers._records import JobRecords
from jobwire.gateway.providers.sqs import TABLES

from support import new_job


@pytest.fixture(params=["sqlite", "postgres"])
def records_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path}/records.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def gateways(records_url: str) -> AsyncIterator[tuple[JobRecords, JobRecords]]:
    """The records as two gateways see them."""
    pair = (
        JobRecords(records_url, tables=TABLES, dedup=DedupRule(60), retention=3600),
        JobRecords(records_url, tables=TABLES, dedup=DedupRule(60), retention=3600),
    )
    for records in pair:
        await records.open()
    try:
        yield pair
    finally:
        for records in pair:
            await records.close()


def state_of(record: JobRecord, state: JobState, attempt: int) -> JobRecord:
    now = time.time()
    end = now if state.is_terminal else None
    return dataclasses.replace(record, state=state, attempt=attempt, update_time=now, end_time=end)


async def test_late_commits_never_move_a_record_back(
    gateways: tuple[JobRecords, JobRecords],
) -> None:
    a, b = gateways
    new = new_job()
    [(record, _)] = await a.insert([(new, JobRecord.create(new, time.time()))], time.time())
    # B leases attempt 2 and commits first; A's news of attempt 1 arrives late.
    b.save(state_of(record, JobState.PROCESSING, 2))
    await b.flush()
    a.save(state_of(record, JobState.PENDING, 1))
    await a.flush()
    [stored] = await a.load([record.id])
    assert (stored.state, stored.attempt) == (JobState.PROCESSING, 2)
    # The same attempt's outcome does apply, and a finished job stays finished.
    b.save(state_of(record, JobState.COMPLETED, 2))
    await b.flush()
    a.save(state_of(record, JobState.PROCESSING, 3))
    await a.flush()
    [stored] = await b.load([record.id])
    assert (stored.state, stored.attempt) == (JobState.COMPLETED, 2)


async def test_reads_see_buffered_writes_and_receipts_see_uncounted_ones(
    gateways: tuple[JobRecords, JobRecords],
) -> None:
    a, b = gateways
    new = new_job()
    [(record, _)] = await a.insert([(new, JobRecord.create(new, time.time()))], time.time())
    record.state, record.attempt = JobState.PROCESSING, 1
    a.save(record)
    assert await a.get(record.id) is record  # before any commit
    ran: list[str] = []
    a.count_uncounted(record.id, lambda: ran.append("after commit"))
    a.count_uncounted(record.id)
    await a.flush()
    assert ran == ["after commit"]
    view = (await b.for_receipt([record.id]))[record.id]
    assert (view.record.state, view.uncounted) == (JobState.PROCESSING, 2)


async def test_a_deduplication_key_is_taken_until_the_window_after_its_job_ends(
    gateways: tuple[JobRecords, JobRecords],
) -> None:
    a, b = gateways
    first = new_job(deduplication_key="nightly")
    [(kept, duplicate)] = await a.insert(
        [(first, JobRecord.create(first, time.time()))], time.time()
    )
    assert not duplicate
    second = new_job(deduplication_key="nightly")
    [(same, duplicate)] = await b.insert(
        [(second, JobRecord.create(second, time.time()))], time.time()
    )
    assert (same.id, duplicate) == (kept.id, True)
    a.save(state_of(kept, JobState.COMPLETED, 1))
    await a.flush()
    later = time.time() + 61  # past the 60 s window
    [(fresh, duplicate)] = await b.insert([(second, JobRecord.create(second, later))], later)
    assert (duplicate, fresh.id != kept.id) == (False, True)
