"""Rate limits: a token bucket admits deliveries (every flow provider)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from integration.flow.flow_support import (
    BURST,
    FLOW_PROVIDERS,
    RATE,
    RATE_JOBS,
    SPAN,
    assert_rate_held,
    configure,
    enqueue_all,
    stats,
)

from support import Producer, RawWorker
from timing import FRAME_TIMEOUT, QUIET

OpenWorker = Callable[..., Awaitable[RawWorker]]
pytestmark = FLOW_PROVIDERS


@pytest.mark.gateway(queues={"api": {"rate": f"{RATE}/second", "burst": BURST}})
async def test_a_rate_admits_at_most_burst_plus_rate_times_time_and_nearly_that(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    await enqueue_all(producer, "api", [""] * RATE_JOBS)
    worker = await raw_worker(queues=["api"], job_types=["work"], max_in_flight=1000)
    # When each job was admitted, on the gateway's clock: the update time of
    # a delivered job is when its claim took it.
    admitted: list[float] = []
    while not admitted or admitted[-1] - admitted[0] < SPAN:
        items = await worker.jobs(1, timeout=FRAME_TIMEOUT)
        admitted += sorted(item.job.update_time.ToNanoseconds() / 1e9 for item in items)
    assert_rate_held(sorted(admitted))


@pytest.mark.gateway(queues={"api": {"rate": "1/minute"}})
async def test_a_job_held_by_the_rate_says_so_and_a_raised_rate_frees_it(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    first, second = await enqueue_all(producer, "api", ["", ""])
    worker = await raw_worker(queues=["api"], job_types=["work"], max_in_flight=10)
    [item] = await worker.jobs(1)
    assert item.job.id == first
    await worker.nothing("delivery", QUIET)
    held = await producer.get(second)
    assert (held.waiting_reason, held.attempt) == ("rate_limit api (1/minute)", 0)
    assert (await stats(producer, "api")).held.by_rate == 1
    config = await configure(producer, "api", "rate", rate={"text": "10/second"})
    assert (config.rate.count, config.rate.period.seconds, config.rate.text) == (10, 1, "10/second")
    [item] = await worker.jobs(1)
    assert item.job.id == second
