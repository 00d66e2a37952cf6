"""Key policies on enqueue: cancel_in_progress (the newest wins) and cancel_newest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from integration.flow.flow_support import FLOW_PROVIDERS, enqueue_all

from support import Producer, RawWorker, Response, State, seconds
from timing import QUIET

OpenWorker = Callable[..., Awaitable[RawWorker]]
pytestmark = FLOW_PROVIDERS
Revoked = Response.LeaseRevoked


@pytest.mark.gateway(
    queues={"deploys": {"max_concurrency_per_key": 1, "on_busy_key": "cancel_in_progress"}}
)
async def test_cancel_in_progress_cancels_the_running_job_and_runs_the_new_one(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(queues=["deploys"], job_types=["work"], max_in_flight=10)
    [old] = await enqueue_all(producer, "deploys", ["site-1"])
    [running] = await worker.jobs(1)
    assert running.job.id == old
    [new] = await enqueue_all(producer, "deploys", ["site-1"])
    revoked = (await worker.expect("lease_revoked")).lease_revoked
    assert (revoked.lease_id, revoked.reason) == (running.lease_id, Revoked.REASON_CANCELLED)
    cancelled = await producer.get(old)
    assert cancelled.state == State.STATE_CANCELLED
    assert f"replaced by job {new}" in cancelled.last_error.message
    [item] = await worker.jobs(1)
    assert item.job.id == new
    await worker.ack(item.lease_id)
    assert (await worker.result()).ok
    await producer.wait_state(new, State.STATE_COMPLETED)
    # The late answer for the cancelled job is fenced off.
    await worker.ack(running.lease_id)
    assert (await worker.result()).reason == "LEASE_REVOKED"


@pytest.mark.gateway(
    queues={"deploys": {"max_concurrency_per_key": 2, "on_busy_key": "cancel_in_progress"}}
)
async def test_cancel_in_progress_keeps_the_newest_of_a_batch(producer: Producer) -> None:
    ids = await enqueue_all(producer, "deploys", ["site-1"] * 5)
    states = [(await producer.get(job_id)).state for job_id in ids]
    assert states == [State.STATE_CANCELLED] * 3 + [State.STATE_PENDING] * 2


@pytest.mark.gateway(
    queues={"reports": {"max_concurrency_per_key": 1, "on_busy_key": "cancel_newest"}}
)
async def test_cancel_newest_cancels_the_new_job_at_once_saying_why(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(queues=["reports"], job_types=["work"], max_in_flight=10)
    first = await producer.enqueue(
        "work", queue="reports", concurrency_key="customer-7", payload=b"{}"
    )
    [running] = await worker.jobs(1)
    second = await producer.enqueue(
        "work", queue="reports", concurrency_key="customer-7", payload=b"{}"
    )
    assert second.state == State.STATE_CANCELLED
    assert second.last_error.message == (
        "concurrency key customer-7 already has 1 of 1 jobs pending or processing: "
        "queue reports has on_busy_key = cancel_newest"
    )
    await worker.nothing("lease_revoked", QUIET)
    other = await producer.enqueue(
        "work", queue="reports", concurrency_key="customer-8", payload=b"{}"
    )
    assert other.state == State.STATE_PENDING
    await worker.ack(running.lease_id)
    await producer.wait_state(first.id, State.STATE_COMPLETED)


@pytest.mark.gateway(
    scheduler={"delay_threshold": 0.5}, queues={"reports": {"max_concurrency_per_key": 1}}
)
async def test_a_job_the_scheduler_holds_keeps_its_key_and_its_limit(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(queues=["reports"], job_types=["work"], max_in_flight=10)
    [now] = await enqueue_all(producer, "reports", ["customer-7"])
    [running] = await worker.jobs(1)
    later = await producer.enqueue(
        "work", queue="reports", concurrency_key="customer-7", delay=seconds(1.5)
    )
    held = await producer.get(later.id)
    assert (held.state, held.concurrency_key) == (State.STATE_SCHEDULED, "customer-7")
    # Handed to the provider when due: still of its key, so held by the running one.
    await producer.wait_state(later.id, State.STATE_PENDING)
    await worker.nothing("delivery", QUIET)
    assert (await producer.get(later.id)).waiting_reason.startswith("concurrency key customer-7")
    await worker.ack(running.lease_id)
    [item] = await worker.jobs(1)
    assert (item.job.id, item.job.concurrency_key) == (later.id, "customer-7")
    assert running.job.id == now
