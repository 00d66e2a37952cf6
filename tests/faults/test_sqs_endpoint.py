"""The SQS endpoint stops answering for 5 s (moto server SIGSTOPped), then resumes.

SQS itself never loses a message in an outage, so the endpoint is frozen
rather than killed (a killed moto server forgets its queues); calls in flight
hang, new connections queue up unanswered. Workers keep their streams and no
job is lost. The outage that refuses connections is in
``tests/integration/sqs/test_sqs_outage.py``.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from jobwire.client import AsyncClient, JobRequest

from fleet import Fleet, Outcome, settle
from sqs_support import create_queues

OUTAGE = 5.0


async def test_workers_stay_connected_through_an_sqs_outage_and_nothing_is_lost(
    fleet: Fleet,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    moto_server: object,  # only for its AWS test credentials in the environment
) -> None:
    moto, endpoint = fleet.moto()
    queues = await create_queues(endpoint)
    gateway = fleet.gateway(
        provider=queues.provider_settings(visibility_timeout=2, wait_time=1),
        server={"min_lease_duration": 1},
    )
    client = connect(gateway.address)
    accepted = await client.enqueue_many(
        JobRequest("work", {"seconds": 0.05}, max_retries=20) for _ in range(150)
    )
    workers = [fleet.worker(gateway.address) for _ in range(2)]
    await fleet.ledger.wait_for(len(accepted) // 4)
    fleet.kill(moto, signal.SIGSTOP)
    await asyncio.sleep(OUTAGE)
    moto.send_signal(signal.SIGCONT)

    outcome = await settle(
        client,
        fleet,
        [job.id for job in accepted],
        scenario=f"SQS endpoint frozen for {OUTAGE:g} s",
        provider="sqs",
        in_flight_at_fault=lambda run: run.started <= fleet.faults[-1],
    )
    report(outcome)
    assert all(worker.poll() is None for worker in workers)
    assert "stream to the gateway failed" not in (fleet.directory / "workers.log").read_text()
