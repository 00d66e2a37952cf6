"""PostgreSQL drops the scheduler's connections (its backends terminated) again and again.

The scheduler reconnects; no one-time job and no occurrence of a recurring
schedule is lost or fired twice.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from jobwire.client import AsyncClient, JobRequest, JobState

from fleet import Fleet, Outcome, settle, wait_finished
from postgres import asyncpg_url, psql, temporary_database, terminate_connections

ONE_TIME = 300
SPREAD = 4.0  # seconds over which the one-time jobs fall due
TERMINATIONS = 8
EVERY = 0.5  # seconds between terminations


async def test_the_scheduler_reconnects_and_fires_everything_exactly_once(
    fleet: Fleet,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
) -> None:
    with temporary_database("jobwire_faults") as database:
        gateway = fleet.gateway(
            scheduler={
                "database_url": asyncpg_url(database),
                "delay_threshold": 0,  # every delayed job is held in PostgreSQL
                "poll_interval": 1,
            },
            provider={"max_history": 100_000},
        )
        client = connect(gateway.address)
        fleet.worker(gateway.address, "--queue", "default", "--queue", "ticks")
        start = time.time() + 1.0
        accepted = await client.enqueue_many(
            JobRequest("work", {}, at=datetime.fromtimestamp(start + SPREAD * i / ONE_TIME, UTC))
            for i in range(ONE_TIME)
        )
        assert all(job.state == JobState.SCHEDULED for job in accepted)
        await client.register_recurring(
            "tick", "work", {}, schedule=timedelta(seconds=1), queue="ticks"
        )

        terminated = 0
        for _ in range(TERMINATIONS):
            await asyncio.sleep(EVERY)
            fleet.faults.append(time.time())
            terminated += terminate_connections(database)
        await wait_finished(client, "default", ONE_TIME)
        await client.pause_schedule("tick")

        fires = [
            line.split("|")
            for line in psql(
                "SELECT extract(epoch FROM fire_time), job_id FROM schedule_fires "
                "ORDER BY fire_time",
                database,
            ).splitlines()
        ]
        await wait_finished(client, "ticks", len(fires))
        outcome = await settle(
            client,
            fleet,
            [job.id for job in accepted],
            scenario=f"PostgreSQL backends terminated {TERMINATIONS} times under the scheduler",
            provider="memory + scheduler",
            in_flight_at_fault=lambda run: False,  # a job the scheduler fired twice would fail
            note=f"{terminated} connections dropped; {len(fires)} occurrences of a 1 s schedule",
        )
        await client.delete_schedule("tick")
    report(outcome)
    assert terminated >= TERMINATIONS // 2  # the scheduler did hold connections to drop
    runs = fleet.ledger.executions()
    assert len(fires) >= 3
    # Every occurrence once, no gap, no double; each fired job ran exactly once.
    times = [float(fire_time) for fire_time, _ in fires]
    assert {round(b - a, 3) for a, b in itertools.pairwise(times)} == {1.0}
    assert len({job_id for _, job_id in fires}) == len(fires)
    assert all(len(runs[job_id]) == 1 for _, job_id in fires)
