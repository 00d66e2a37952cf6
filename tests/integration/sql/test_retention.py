"""Bounded history: finished jobs pruned by count and by age; unfinished jobs kept."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from backends import provider_settings
from conftest import GatewayFactory
from support import Producer, RawWorker, State, eventually, seconds

PRUNE = {"prune_interval": 0.2, "heartbeat_interval": 0.1, "heartbeat_timeout": 1}


async def finish(producer: Producer, worker: RawWorker, count: int) -> list[str]:
    jobs = [await producer.enqueue(type="now") for _ in range(count)]
    items = await worker.jobs(count)
    await worker.ack(*(item.lease_id for item in items))
    await producer.wait_state(jobs[-1].id, State.STATE_COMPLETED)
    return [job.id for job in jobs]


async def known(producer: Producer, job_id: str) -> bool:
    try:
        await producer.get(job_id)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.NOT_FOUND:
            raise
        return False
    return True


@pytest.mark.parametrize("provider_kind", ["postgres", "sqlite"])
@pytest.mark.parametrize(
    ("limits", "kept"),
    [({"max_history": 2}, 2), ({"history_retention": 0.5}, 0)],
    ids=["by-count", "by-age"],
)
async def test_finished_jobs_beyond_the_limits_are_pruned(
    gateway_factory: GatewayFactory,
    request: pytest.FixtureRequest,
    provider_kind: str,
    limits: dict[str, Any],
    kept: int,
) -> None:
    provider = provider_settings(provider_kind, request, {**PRUNE, **limits})
    gateway = await gateway_factory(provider=provider)
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        producer = Producer(channel)
        waiting = await producer.enqueue(type="later", delay=seconds(3600))
        worker = await RawWorker(channel, job_types=["now"], max_in_flight=10).open()
        finished = await finish(producer, worker, 5)

        async def pruned() -> bool:
            return [await known(producer, i) for i in finished] == [False] * (5 - kept) + [
                True
            ] * kept

        await eventually(pruned, 10)
        assert (await producer.get(waiting.id)).state == State.STATE_SCHEDULED
        worker.drop()
