"""A unique prefix of at least 8 characters names a job wherever an id is expected."""

from __future__ import annotations

import grpc
import pytest

from jobwire.gateway import Gateway
from jobwire.v1 import queue_service_pb2

from backends import CONTRACT
from support import Producer, State, new_job, seconds

pytestmark = CONTRACT
Q = queue_service_pb2


async def test_get_cancel_and_watch_take_a_unique_prefix(producer: Producer) -> None:
    job = await producer.enqueue()
    assert (await producer.get(job.id[:8])).id == job.id
    held = await producer.enqueue(delay=seconds(3600))  # in the scheduler's database
    assert (await producer.get(held.id[:10])).id == held.id
    cancelled = await producer.stub.CancelJob(Q.CancelJobRequest(id=job.id[:8]))
    assert (cancelled.job.id, cancelled.job.state) == (job.id, State.STATE_CANCELLED)
    assert (await producer.wait_state(held.id[:8], State.STATE_SCHEDULED)).id == held.id


async def test_a_short_or_unknown_prefix_is_not_found(producer: Producer) -> None:
    job = await producer.enqueue()
    for prefix in (job.id[:7], "zzzzzzzz"):  # too short; no hex id starts with z
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await producer.get(prefix)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_ambiguous_prefix_names_the_candidates(
    gateway: Gateway, producer: Producer
) -> None:
    ids = ["0123456789abcdef0123456789abcde1", "0123456789abcdef0123456789abcde2"]
    await gateway.service.submit([new_job(request_id=f"r-{job_id}", id=job_id) for job_id in ids])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await producer.get("0123456789")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{ids[0]}, {ids[1]}" in (raised.value.details() or "")
    assert (await producer.get(ids[1])).id == ids[1]  # the full id still names one job
