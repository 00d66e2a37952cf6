"""Fair dispatch: deliveries rotate across concurrency keys (every flow provider)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from integration.flow.flow_support import FLOW_PROVIDERS, configure, enqueue_all

from support import Producer, RawWorker
from timing import QUIET

OpenWorker = Callable[..., Awaitable[RawWorker]]
pytestmark = FLOW_PROVIDERS


async def deliveries(worker: RawWorker, count: int) -> list[str]:
    """The keys of the next ``count`` jobs delivered, each acked at once."""
    keys: list[str] = []
    while len(keys) < count:
        items = await worker.jobs(1)
        keys += [item.job.concurrency_key for item in items]
        await worker.ack(*(item.lease_id for item in items))
    return keys


async def test_a_small_tenant_starts_within_a_few_deliveries_of_a_big_one(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    worker = await raw_worker(queues=["exports"], job_types=["work"], max_in_flight=10)
    await enqueue_all(producer, "exports", ["tenant-a"] * 5000)
    assert set(await deliveries(worker, 200)) == {"tenant-a"}
    await enqueue_all(producer, "exports", ["tenant-b"] * 10)
    after = await deliveries(worker, 60)
    last_b = max(i for i, key in enumerate(after) if key == "tenant-b")
    assert after.count("tenant-b") == 10
    # Every B started before 100 more of A did (here: within about 2 x 10 + in flight).
    assert after[:last_b].count("tenant-a") < 100
    assert after[:last_b].count("tenant-a") <= 10 + 10 + 1


async def test_every_key_of_many_gets_its_turn_before_any_gets_a_second(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    # More keys than one read of the lanes holds (Redis reads 32 at a time),
    # enqueued out of key order: each round of the rotation serves every key
    # once (in key order or the order the keys came, per provider), across
    # the wrap too.
    keys = [f"k{i:02}" for i in range(80)]
    await enqueue_all(producer, "exports", keys[40:] + keys[:40] + keys)
    worker = await raw_worker(queues=["exports"], job_types=["work"], max_in_flight=50)
    served = await deliveries(worker, 160)
    assert sorted(served[:80]) == keys
    assert sorted(served[80:]) == keys


async def test_keys_with_nothing_due_do_not_hold_the_others_back(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    # The first keys in turn order hold only jobs due in an hour: more of them
    # than a small claim reads first (its limit and a few more, on SQL).
    await enqueue_all(producer, "exports", [f"a{i:02}" for i in range(30)], delay=3600)
    ready = [f"b{i:02}" for i in range(4)]
    await enqueue_all(producer, "exports", ready)
    worker = await raw_worker(queues=["exports"], job_types=["work"], max_in_flight=2)
    assert sorted(await deliveries(worker, 4)) == ready


async def test_keys_at_their_limit_do_not_hold_the_others_back(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    await configure(producer, "exports", "max_concurrency_per_key", max_concurrency_per_key=1)
    busy = [f"b{i:02}" for i in range(10)]
    await enqueue_all(producer, "exports", [*busy, "z"])
    holder = await raw_worker(queues=["exports"], job_types=["work"], max_in_flight=11)
    assert len(await holder.jobs(11)) == 11  # one of each key, kept running; the turn is at z
    # Around again from the start, the keys at their limit come first: more
    # of them than a claim of one job reads first on SQL.
    await enqueue_all(producer, "exports", [*busy, "f0", "f1"])
    worker = await raw_worker(queues=["exports"], job_types=["work"], max_in_flight=1)
    [item] = await worker.jobs(1)
    assert item.job.concurrency_key in {"f0", "f1"}


async def test_weights_give_a_key_more_deliveries_per_round(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    await configure(producer, "exports", "key_weights", key_weights={"big": 3})
    await enqueue_all(producer, "exports", ["big"] * 40 + ["small"] * 40)
    worker = await raw_worker(queues=["exports"], job_types=["work"], max_in_flight=1)
    keys = await deliveries(worker, 40)
    assert 28 <= keys.count("big") <= 32  # three of four


async def test_a_queue_without_keys_stays_strictly_fifo(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    ids = await enqueue_all(producer, "plain", [""] * 50)
    worker = await raw_worker(queues=["plain"], job_types=["work"], max_in_flight=7)
    order: list[str] = []
    while len(order) < len(ids):
        items = await worker.jobs(1)
        order += [item.job.id for item in items]
        await worker.ack(*(item.lease_id for item in items))
    assert order == ids


@pytest.mark.gateway(queues={"exports": {"fifo_across_keys": True, "max_concurrency_per_key": 2}})
async def test_fair_dispatch_off_takes_the_oldest_across_keys_within_the_limits(
    producer: Producer, raw_worker: OpenWorker
) -> None:
    await enqueue_all(producer, "exports", ["a"] * 5 + ["b"] * 5 + [""] * 2)
    worker = await raw_worker(queues=["exports"], job_types=["work"], max_in_flight=10)
    # The oldest first, but no more than 2 of a key at once: a, a, then the
    # next key that may run; then one at a time as the slots free.
    items = await worker.jobs(6)
    assert [item.job.concurrency_key for item in items] == ["a", "a", "b", "b", "", ""]
    await worker.nothing("delivery", QUIET)
    await worker.ack(items[3].lease_id)  # a slot of b frees: b's next job, not a's
    [item] = await worker.jobs(1)
    assert item.job.concurrency_key == "b"
