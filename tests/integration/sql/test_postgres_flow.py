"""Flow control across two gateways on one PostgreSQL database: one limit, one bucket, for all."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import AsyncExitStack
from datetime import timedelta

import grpc
from integration.flow.flow_support import (
    BURST,
    RATE,
    RATE_JOBS,
    SPAN,
    Recorder,
    Run,
    assert_rate_held,
    configure,
    enqueue_all,
    most_at_once,
)
from integration.sql.conftest import SqlGateway
from integration.sqs.conftest import ClientFactory

from jobwire.v1 import queue_service_pb2
from jobwire.worker import Backoff, Worker

from support import Producer, State, eventually
from timing import LIMIT_CHANGE_SEEN, QUIET

KEYS = [f"customer-{n}" for n in range(20)]


async def test_two_gateways_and_four_workers_never_run_more_than_the_limit_of_a_key(
    postgres_gateway: SqlGateway,
) -> None:
    limited = {"reports": {"max_concurrency_per_key": 2}}
    a = await postgres_gateway(queues=limited)
    b = await postgres_gateway(queues=limited)
    recorder = Recorder()
    keys = [KEYS[n % len(KEYS)] for n in range(2000)]
    async with AsyncExitStack() as stack:
        for gateway in (a, b, a, b):  # 64 handler slots for 40 key slots
            await stack.enter_async_context(
                Worker(
                    gateway.address,
                    registry=recorder.registry,
                    queues=["reports"],
                    concurrency=16,
                    max_in_flight=16,
                    shutdown_timeout=5,
                    reconnect=Backoff(maximum=timedelta(seconds=0.5)),
                )
            )
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(a.address))
        await enqueue_all(Producer(channel), "reports", keys, seconds=0.02)
        await recorder.wait_for(len(keys), timeout=180)
    by_key: dict[str, list[Run]] = defaultdict(list)
    for run in recorder.runs:
        by_key[run.key].append(run)
    overlaps = {key: most_at_once(runs) for key, runs in by_key.items()}
    assert max(overlaps.values()) == 2, overlaps
    assert len({run.job_id for run in recorder.runs}) == len(keys)


async def test_a_rate_is_one_bucket_for_both_gateways(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    limited = {"api": {"rate": f"{RATE}/second", "burst": BURST}}
    a = await connect(await postgres_gateway(queues=limited))
    b = await connect(await postgres_gateway(queues=limited))
    await enqueue_all(a.producer, "api", [""] * RATE_JOBS)
    for client in (a, b):
        await client.worker(queues=["api"], job_types=["work"], max_in_flight=1000)

    # When each job was admitted, on the gateways' one clock: a delivered job's
    # update time is when its claim took it (the workers never answer).
    async def admitted() -> list[float]:
        request = queue_service_pb2.ListJobsRequest(
            queue="api", states=[State.STATE_PROCESSING], page_size=1000
        )
        jobs = (await a.producer.stub.ListJobs(request)).jobs
        return sorted(job.update_time.ToNanoseconds() / 1e9 for job in jobs)

    async def spanned() -> bool:
        times = await admitted()
        return bool(times) and times[-1] - times[0] >= SPAN

    await eventually(spanned, timeout=SPAN + 30)
    assert_rate_held(await admitted())


async def test_a_limit_changed_through_one_gateway_is_honoured_by_the_other(
    postgres_gateway: SqlGateway, connect: ClientFactory
) -> None:
    limited = {"live": {"max_concurrency_per_key": 1}}
    a = await connect(await postgres_gateway(queues=limited))
    b = await connect(await postgres_gateway(queues=limited))
    await enqueue_all(a.producer, "live", ["k"] * 10)
    worker = await b.worker(queues=["live"], job_types=["work"], max_in_flight=10)
    await worker.jobs(1)
    await worker.nothing("delivery", QUIET)
    await configure(a.producer, "live", "max_concurrency_per_key", max_concurrency_per_key=3)
    changed = time.monotonic()
    await worker.jobs(2, timeout=LIMIT_CHANGE_SEEN)
    assert time.monotonic() - changed < LIMIT_CHANGE_SEEN
    await worker.nothing("delivery", QUIET)
