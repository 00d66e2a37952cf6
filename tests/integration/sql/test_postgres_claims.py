"""PostgreSQL claims: a stream that took every ready job waits for the next due one."""

from __future__ import annotations

import time

import pytest
from integration.sql.conftest import SqlGateway
from integration.sqs.conftest import ClientFactory

from support import seconds


@pytest.mark.parametrize("job_types", [[], ["t"]], ids=["any type", "typed"])
async def test_a_stream_that_took_every_ready_job_wakes_at_the_next_due_one(
    postgres_gateway: SqlGateway, connect: ClientFactory, job_types: list[str]
) -> None:
    # The poll is a minute: only the earliest run_at, read after the claims,
    # can wake the stream in time.
    client = await connect(await postgres_gateway(poll_interval=60))
    worker = await client.worker(queues=["a", "b"], job_types=job_types, max_in_flight=4)
    ready = [await client.producer.enqueue(queue="a") for _ in range(2)]
    taken = await worker.jobs(2)
    assert {item.job.id for item in taken} == {job.id for job in ready}
    for item in taken:  # the credits come back with nothing ready and nothing new
        await worker.ack(item.lease_id)
    # The lowest and the highest priority, each the only waiting job of its
    # (queue, priority): the earliest is found whatever its priority.
    later = await client.producer.enqueue(queue="a", priority=9, delay=seconds(1.0))
    sooner = await client.producer.enqueue(queue="b", priority=0, delay=seconds(0.5))
    for job in (sooner, later):
        [item] = await worker.jobs(1)
        assert item.job.id == job.id
        assert time.time() >= job.schedule_time.ToNanoseconds() / 1e9
