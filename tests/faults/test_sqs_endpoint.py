"""The SQS endpoint goes away for 5 s and comes back, its messages intact.

Two kinds of outage. *frozen*: the moto server is SIGSTOPped, so calls in
flight hang and new connections go unanswered. *refusing*: the gateway reaches
moto through a TCP proxy that goes down (open connections reset, new ones
refused), as a restarted endpoint looks to its clients. moto itself is never
killed: it would forget its queues, and SQS loses nothing in an outage.
Workers keep their streams throughout and no job is lost.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from jobwire.client import AsyncClient, JobRequest

from fleet import Fleet, Outcome, settle
from proxy import TcpProxy
from sqs_support import create_queues
from timing import SQS_OUTAGE as OUTAGE


@pytest.mark.parametrize("outage", ["frozen", "refusing"])
async def test_workers_stay_connected_through_an_sqs_outage_and_nothing_is_lost(
    fleet: Fleet,
    connect: Callable[[str], AsyncClient],
    report: Callable[[Outcome], None],
    moto_server: object,  # only for its AWS test credentials in the environment
    outage: str,
) -> None:
    moto, endpoint = fleet.moto()
    with TcpProxy(urlsplit(endpoint).port or 80) as proxy:
        # Shown with a failure: an "unclosed transport" report names its two
        # ports, and these tell whose connection it was.
        print(f"moto {endpoint}, proxy {proxy.url}")
        queues = await create_queues(proxy.url)
        settings = queues.provider_settings(visibility_timeout=2, wait_time=1)
        gateway = fleet.gateway(provider=settings, server={"min_lease_duration": 1})
        print(f"gateway {gateway.address}")
        client = connect(gateway.address)
        accepted = await client.enqueue_many(
            JobRequest("work", {"seconds": 0.05}, max_retries=20) for _ in range(150)
        )
        workers = [fleet.worker(gateway.address) for _ in range(2)]
        await fleet.ledger.wait_for(len(accepted) // 4)
        if outage == "frozen":
            fleet.kill(moto, signal.SIGSTOP)
        else:
            fleet.faults.append(time.time())
            proxy.down()
        await asyncio.sleep(OUTAGE)
        if outage == "frozen":
            moto.send_signal(signal.SIGCONT)
        else:
            proxy.up()

        outcome = await settle(
            client,
            fleet,
            [job.id for job in accepted],
            scenario=f"SQS endpoint {outage} for {OUTAGE:g} s",
            provider="sqs",
            in_flight_at_fault=lambda run: run.started <= fleet.faults[-1],
        )
    report(outcome)
    assert all(worker.poll() is None for worker in workers)
    assert "stream to the gateway failed" not in (fleet.directory / "workers.log").read_text()
    if outage == "refusing":  # the gateway did see the endpoint go
        assert "SQS endpoint unreachable" in (fleet.directory / "gateway.log").read_text()
