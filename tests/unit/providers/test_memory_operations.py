"""The memory provider's operator hooks, on the provider itself."""

from __future__ import annotations

import asyncio
import time

from jobwire.gateway import MemoryProviderSettings
from jobwire.gateway._events import JobEvents
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._limits import QueueLimits, parse_rate
from jobwire.gateway._models import AttemptEnd, Failure, JobState, NewJob
from jobwire.gateway.providers import Consumer, Ending, Lease
from jobwire.gateway.providers.memory import MemoryProvider

from timing import FRAME_TIMEOUT


def new_job(queue: str = "default", priority: int = 5) -> NewJob:
    return NewJob(
        queue, "t", b"{}", "application/json", {}, 0, None, "", None, "", priority=priority
    )


def consumer(*queues: str) -> Consumer:
    return Consumer("w", queues or ("default",), frozenset(), 30.0, lambda r: None)


async def kill(provider: MemoryProvider, count: int) -> list[str]:
    await provider.insert([new_job() for _ in range(count)])
    ids = []
    for claim in await provider.claim(consumer(), count):
        job = claim.job
        lease = Lease(f"{job.id}.1", job, consumer(), None, time.time() + 30, None, 0.0)
        end = AttemptEnd(JobState.DEAD, time.time(), Failure("bug", attempt=1))
        await provider.settle([Ending(lease, end)])
        ids.append(job.id)
    return ids


async def test_a_replayed_job_is_not_forgotten_early_by_its_old_history_entry() -> None:
    provider = MemoryProvider(MemoryProviderSettings(max_history=2), JobEvents())
    [first, second] = await kill(provider, 2)
    assert await provider.replay(first, None, None) is not None
    [again] = await kill_claimed(provider)
    assert again == first
    # History: first (stale), second, first. One more finished job pushes out
    # the stale entry only: both finished jobs of the last two stay.
    await kill(provider, 1)
    assert await provider.get(first) is not None
    assert await provider.get(second) is None


async def kill_claimed(provider: MemoryProvider) -> list[str]:
    ids = []
    for claim in await provider.claim(consumer(), 10):
        job = claim.job
        lease = Lease(f"{job.id}.1", job, consumer(), None, time.time() + 30, None, 0.0)
        await provider.settle([Ending(lease, AttemptEnd(JobState.DEAD, time.time()))])
        ids.append(job.id)
    return ids


async def test_claim_skips_paused_queues_and_takes_the_highest_priority_first() -> None:
    provider = MemoryProvider(MemoryProviderSettings(), JobEvents())
    await provider.set_paused("held", True)
    await provider.insert([new_job("held", 9), new_job(priority=1), new_job(priority=7)])
    claims = await provider.claim(consumer("held", "default"), 10)
    assert [c.job.priority for c in claims] == [7, 1]
    [row] = [r for r in await provider.counts(None) if r.queue == "held"]
    assert (row.paused, row.by_state[JobState.PENDING]) == (True, 1)
    purged = await provider.purge(
        JobSelector(queue="held"), include_processing=False, validate_only=True
    )
    assert purged.count == 1
    assert (await provider.counts("held"))[0].by_state[JobState.PENDING] == 1


async def test_a_token_that_comes_between_an_empty_claim_and_its_wait_lets_it_go_on() -> None:
    provider = MemoryProvider(MemoryProviderSettings(), JobEvents())
    await provider.set_limits("api", QueueLimits(rate=parse_rate("100/second")))
    await provider.insert([new_job("api") for _ in range(3)])
    assert len(await provider.claim(consumer("api"), 10)) == 1  # the burst of 1
    store = provider._store
    assert store.take(consumer("api"), 10) == []  # the bucket is empty
    time.sleep(0.05)  # a token comes before the claim parks (a busy machine's pause)
    # The claim must not park without a timer: nothing else would wake it.
    assert store.rate_wait(consumer("api")) == 0.0
    assert len(await asyncio.wait_for(provider.claim(consumer("api"), 10), FRAME_TIMEOUT)) == 1
