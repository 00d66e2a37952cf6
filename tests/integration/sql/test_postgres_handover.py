"""PostgreSQL: an insert hands its jobs to a parked stream, leased in its own statement."""

from __future__ import annotations

import asyncio
import contextlib

from integration.sql.conftest import SqlGateway

from jobwire.gateway import Gateway
from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway.providers import Claim, Consumer
from jobwire.gateway.providers.sql import SqlProvider

from support import eventually
from timing import FRAME_TIMEOUT


def provider_of(gateway: Gateway) -> SqlProvider:
    provider = gateway.provider
    assert isinstance(provider, SqlProvider)
    return provider


def consumer(name: str = "parked") -> Consumer:
    """A stream's consumer, claimed for by the test itself."""
    return Consumer(name, ("default",), frozenset(), 30.0, lambda revocation: None)


def new_job(priority: int = 5) -> NewJob:
    return NewJob(
        "default", "t", b"{}", "application/json", {}, 0, None, "", None, "", priority=priority
    )


async def parked(provider: SqlProvider, stream: Consumer) -> None:
    """Wait until ``stream`` offers to take what an insert stores."""
    await eventually(lambda: any(o.consumer is stream for o in provider._handover._offers))


async def parked_stream(
    postgres_gateway: SqlGateway, room: int = 4, name: str = "parked"
) -> tuple[SqlProvider, Consumer, asyncio.Task[list[Claim[None]]]]:
    """A gateway (polling once a minute) and a stream's claim parked on it for ``room`` jobs."""
    # A minute's poll: only an insert or its wake-up brings jobs.
    provider = provider_of(await postgres_gateway(poll_interval=60))
    stream = consumer(name)
    claiming = asyncio.create_task(provider.claim(stream, room))
    await parked(provider, stream)
    return provider, stream, claiming


async def stopped(claiming: asyncio.Task[list[Claim[None]]]) -> None:
    claiming.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await claiming


async def received(claiming: asyncio.Task[list[Claim[None]]]) -> list[JobRecord]:
    async with asyncio.timeout(FRAME_TIMEOUT):
        return [claim.job for claim in await claiming]


async def test_a_parked_stream_gets_the_job_without_a_claim(
    postgres_gateway: SqlGateway,
) -> None:
    provider, stream, claiming = await parked_stream(postgres_gateway)
    [(job, duplicate)] = await provider.insert([new_job()])
    assert (job.state, duplicate) == (JobState.PENDING, False)  # as the producer is told
    [leased] = await received(claiming)
    assert (leased.id, leased.state, leased.attempt, leased.worker_id) == (
        job.id,
        JobState.PROCESSING,
        1,
        "parked",
    )
    stored = await provider.get(job.id)
    assert stored is not None
    assert (stored.state, stored.attempt, stored.worker_id) == (JobState.PROCESSING, 1, "parked")
    # Written leased by the insert itself: no claim came after it.
    assert stored.update_time == stored.create_time
    # The table is as idle as it was: the stream offers again at once.
    again = asyncio.create_task(provider.claim(stream, 4))
    await parked(provider, stream)
    await stopped(again)


async def test_the_highest_priorities_of_a_batch_go_to_the_room_offered(
    postgres_gateway: SqlGateway,
) -> None:
    provider, stream, claiming = await parked_stream(postgres_gateway, room=1)
    results = await provider.insert([new_job(priority=1), new_job(priority=9)])
    low, high = (job for job, _ in results)
    [leased] = await received(claiming)
    assert leased.id == high.id
    # The other waits in the table, and its wake-up brings it to the next claim.
    [rest] = await received(asyncio.create_task(provider.claim(stream, 1)))
    assert (rest.id, rest.attempt) == (low.id, 1)


async def test_a_job_of_a_paused_queue_is_stored_waiting(
    postgres_gateway: SqlGateway,
) -> None:
    provider, stream, claiming = await parked_stream(postgres_gateway)
    await provider.set_paused("default", True)  # by this gateway or another: read by the insert
    await parked(provider, stream)
    [(job, _)] = await provider.insert([new_job()])
    stored = await provider.get(job.id)
    assert stored is not None
    assert (stored.state, stored.attempt, stored.worker_id) == (JobState.PENDING, 0, "")
    assert not claiming.done()
    await provider.set_paused("default", False)
    [leased] = await received(claiming)
    assert (leased.id, leased.attempt) == (job.id, 1)


async def test_the_jobs_of_a_stream_that_left_during_the_insert_go_back(
    postgres_gateway: SqlGateway,
) -> None:
    provider, _, claiming = await parked_stream(postgres_gateway, name="gone")
    inserting = asyncio.create_task(provider.insert([new_job()]))
    # The insert takes the offer before its first round trip, and the
    # statement (committed with an fsync) is still under way.
    await asyncio.sleep(0)
    assert not provider._handover._offers
    assert not inserting.done()
    await stopped(claiming)
    [(job, _)] = await inserting
    # Put back as never leased: the next stream's claim is its first attempt.
    [leased] = await received(asyncio.create_task(provider.claim(consumer("next"), 4)))
    assert (leased.id, leased.attempt, leased.worker_id) == (job.id, 1, "next")
