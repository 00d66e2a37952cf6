"""A gateway SIGKILLed while its worker holds a key's slot: the slot comes back with its lease.

Flow control counts a key's jobs *processing* (PostgreSQL: from the table;
Redis: a set per key the lease scripts keep), so the slot of a job leased
through a dead gateway is held until another gateway releases that lease, once
the dead one's heartbeat lapsed (2 s here); the job then runs
again elsewhere, counted as an attempt. Until then, "at most N" still holds:
the key's next job waits for that slot.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobwire.client import AsyncClient, JobState

from fleet import Fleet, StartGateway
from support import eventually
from timing import FRAME_TIMEOUT, RELEASED_WITHIN

LIMITED = {"reports": {"max_concurrency_per_key": 1}}


@pytest.mark.parametrize("provider_kind", ["postgres", "redis"])
async def test_a_killed_gateways_key_slot_is_released_with_its_lease(
    fleet: Fleet, start_gateway: StartGateway, connect: Callable[[str], AsyncClient]
) -> None:
    a = start_gateway(queues=LIMITED)
    b = start_gateway(queues=LIMITED)
    on_b = fleet.worker(b.address, "--queue", "reports", concurrency=4)
    client = connect(a.address)
    long = await client.enqueue(
        "work", {"seconds": 30}, queue="reports", concurrency_key="k", max_retries=5
    )
    short = await client.enqueue("work", {}, queue="reports", concurrency_key="k")
    await fleet.ledger.wait_running(on_b)
    held = await client.get_job(short.id)
    assert held.state is JobState.PENDING
    assert (held.waiting_reason or "").startswith("concurrency key k (1 of 1 processing)")

    on_a = fleet.worker(a.address, "--queue", "reports", concurrency=4)
    fleet.kill(b.process)
    killed = fleet.faults[-1]

    # The held job is the key's oldest ready one: it takes the slot once the lease is released.
    await eventually(lambda: short.id in fleet.ledger.executions(), RELEASED_WITHIN + 30)
    [run] = fleet.ledger.executions()[short.id]
    assert run.pid == on_a.pid
    assert killed < run.started < killed + RELEASED_WITHIN

    def rerun_on_a() -> bool:
        return any(run.pid == on_a.pid for run in fleet.ledger.executions().get(long.id, []))

    await eventually(rerun_on_a, FRAME_TIMEOUT)
    [rerun] = [run for run in fleet.ledger.executions()[long.id] if run.pid == on_a.pid]
    assert rerun.attempt == 2  # the lost attempt counted
