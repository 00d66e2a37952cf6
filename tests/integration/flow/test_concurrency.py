"""Concurrency keys: at most N jobs of a key processing, held jobs named (every flow provider)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

import pytest
from integration.flow.flow_support import (
    FLOW_PROVIDERS,
    Recorder,
    Run,
    StartWorkers,
    configure,
    enqueue_all,
    most_at_once,
    stats,
)

from support import Producer, RawWorker, State, seconds
from timing import EXPIRING_LEASE, FRAME_TIMEOUT, QUIET

OpenWorker = Callable[..., Awaitable[RawWorker]]
KEYS = [f"customer-{n}" for n in range(20)]


pytestmark = FLOW_PROVIDERS


@pytest.mark.gateway(queues={"reports": {"max_concurrency_per_key": 2}})
async def test_no_key_ever_has_more_than_its_limit_running(
    producer: Producer, start_workers: StartWorkers, recorder: Recorder
) -> None:
    keys = [KEYS[n % len(KEYS)] for n in range(2000)]
    # 4 workers of 16 handlers: more room than the 20 keys x 2 slots allowed;
    # no prefetch, so that every job leased starts at once (a lease holds a
    # key's slot from delivery to answer, waiting in a worker's buffer too).
    await start_workers(4, ["reports"], concurrency=16, max_in_flight=16)
    await enqueue_all(producer, "reports", keys, seconds=0.02)
    await recorder.wait_for(len(keys), timeout=120)
    by_key: dict[str, list[Run]] = defaultdict(list)
    for run in recorder.runs:
        by_key[run.key].append(run)
    assert sorted(by_key) == sorted(KEYS)
    overlaps = {key: most_at_once(runs) for key, runs in by_key.items()}
    assert max(overlaps.values()) == 2, overlaps  # never 3, and the limit was used
    assert len({run.job_id for run in recorder.runs}) == len(keys)


@pytest.mark.gateway(queues={"reports": {"max_concurrency_per_key": 1}})
async def test_a_held_job_says_why_uses_no_attempt_and_is_counted(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    first, second, third = await enqueue_all(producer, "reports", ["customer-7"] * 3)
    [other] = await enqueue_all(producer, "reports", ["customer-8"])
    worker = await raw_worker(queues=["reports"], job_types=["work"], max_in_flight=10)
    items = await worker.jobs(2)
    assert {item.job.id for item in items} == {first, other}
    await worker.nothing("delivery", QUIET)
    held = await producer.get(second)
    assert (held.state, held.attempt) == (State.STATE_PENDING, 0)
    assert held.concurrency_key == "customer-7"
    assert held.waiting_reason == "concurrency key customer-7 (1 of 1 processing)"
    row = await stats(producer, "reports")
    assert (row.pending, row.processing) == (2, 2)
    assert (row.held.by_key, row.held.busy_keys) == (2, 2)
    # The ack frees the key's slot: the next job of the key runs at once.
    await worker.ack(next(item.lease_id for item in items if item.job.id == first))
    [item] = await worker.jobs(1)
    assert (item.job.id, item.attempt) == (second, 1)
    assert (await producer.get(third)).waiting_reason.startswith("concurrency key customer-7")
    assert (await producer.get(other)).waiting_reason == ""


@pytest.mark.gateway(
    server={"min_lease_duration": EXPIRING_LEASE},
    queues={"reports": {"max_concurrency_per_key": 1}},
)
async def test_a_key_slot_is_released_by_nack_expiry_and_stream_drop(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    ids = await enqueue_all(producer, "reports", ["k"] * 4)
    worker = await raw_worker(queues=["reports"], job_types=["work"], max_in_flight=10)
    [item] = await worker.jobs(1)
    await worker.nothing("delivery", QUIET)
    await worker.nack(item.lease_id, retry_delay=seconds(60))
    [item] = await worker.jobs(1)  # the nack freed the slot
    worker.drop()
    other = await raw_worker(queues=["reports"], job_types=["work"], max_in_flight=10)
    [item] = await other.jobs(1)  # the dropped stream freed it
    await other.nothing("delivery", QUIET)
    short = await raw_worker(
        worker_id="short",
        queues=["reports"],
        job_types=["work"],
        max_in_flight=10,
        lease_duration=seconds(EXPIRING_LEASE),
    )
    other.drop()
    [item] = await short.jobs(1)
    # Not answered: its lease expires, which frees the slot for the next job.
    await short.expect("lease_revoked", timeout=FRAME_TIMEOUT)
    [after] = await short.jobs(1)
    assert {item.job.id, after.job.id} <= set(ids)


@pytest.mark.gateway(queues={"reports": {"max_concurrency_per_key": 1}})
async def test_priorities_order_the_jobs_of_one_key(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(queues=["reports"], job_types=["work"])
    first = await producer.enqueue("work", queue="reports", concurrency_key="k", priority=1)
    [running] = await worker.jobs(1)
    assert running.job.id == first.id
    later = {}
    for priority in (5, 9, 5):
        job = await producer.enqueue(
            "work", queue="reports", concurrency_key="k", priority=priority
        )
        later[job.id] = priority
    await worker.ack(running.lease_id)
    order = []
    for _ in range(3):
        [item] = await worker.jobs(1)
        order.append((later[item.job.id], item.job.id))
        await worker.ack(item.lease_id)
    # The key's slot went to the highest priority, then the oldest among equals.
    assert [priority for priority, _ in order] == [9, 5, 5]
    assert [job_id for _, job_id in order[1:]] == [i for i, p in later.items() if p == 5]


@pytest.mark.gateway(queues={"batch": {"max_concurrency": 3}})
async def test_max_concurrency_bounds_the_whole_queue(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    ids = [(await producer.enqueue("work", queue="batch")).id for _ in range(5)]
    worker = await raw_worker(queues=["batch"], job_types=["work"], max_in_flight=10)
    items = await worker.jobs(3)
    await worker.nothing("delivery", QUIET)
    held = await producer.get(ids[4])
    assert held.waiting_reason == "max_concurrency batch (3 of 3 processing)"
    assert (await stats(producer, "batch")).held.by_concurrency == 2
    await worker.ack(items[0].lease_id)
    assert len(await worker.jobs(1)) == 1
    await configure(producer, "batch", "max_concurrency", max_concurrency=0)
    assert len(await worker.jobs(1)) == 1  # no limit any more
