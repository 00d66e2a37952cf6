"""The lease state machine against a minimal backend written here.

The backend below is storage only: a dict of records and a list of ready
ids. Everything the tests check (lease ids, deadlines, fencing, the
retry-or-dead decision, credits of unanswered leases) is the state machine's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest

from jobwire.gateway import RetrySettings
from jobwire.gateway._dedup import DedupRule
from jobwire.gateway._events import JobEvents
from jobwire.gateway._models import JobFilter, JobRecord, JobState, NewJob
from jobwire.gateway.providers import (
    AckRequest,
    Claim,
    Consumer,
    Ending,
    Lease,
    Leases,
    NackRequest,
    QueueCounts,
    QueueProvider,
    RetryPolicy,
    Revocation,
    RevokeReason,
)
from jobwire.v1 import job_pb2

from support import eventually


class DictBackend(QueueProvider[int]):
    """Jobs in a dict; a lease's handle is the number of its claim."""

    def __init__(self) -> None:
        super().__init__(JobEvents(), DedupRule())
        self.jobs: dict[str, JobRecord] = {}
        self.ready: list[str] = []
        self.endings: list[Ending[int]] = []
        self.cancelled_with: list[Lease[int] | None] = []
        self.claims = 0
        self.keeps = True
        """What ``extend`` answers."""
        self.extending = asyncio.Event()
        self.extending.set()
        """Cleared: ``extend`` waits, as a backend with a slow round trip."""
        self.holds = True
        """What ``settle`` answers for each ending."""

    async def insert(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        now = time.time()
        results = self.dedup.admit(jobs, now, lambda new: JobRecord.create(new, now))
        for job, _ in results:
            self.jobs[job.id] = job
            self.ready.append(job.id)
        return results

    async def get(self, job_id: str) -> JobRecord | None:
        return self.jobs.get(job_id)

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        return [job for job in self.jobs.values() if where.matches(job)][:limit], None

    async def counts(self, queue: str | None) -> list[QueueCounts]:
        return []

    async def cancel(self, job_id: str, message: str, lease: Lease[int] | None) -> JobRecord | None:
        self.cancelled_with.append(lease)
        job = self.jobs.get(job_id)
        if job is not None and not job.state.is_terminal:
            job.cancel(message, time.time())
        return job

    async def claim(self, consumer: Consumer, max_jobs: int) -> list[Claim[int]]:
        taken, self.ready = self.ready[:max_jobs], self.ready[max_jobs:]
        claims = []
        for job_id in taken:
            job = self.jobs[job_id]
            job.begin_attempt(job.attempt + 1, consumer.worker_id, time.time())
            self.claims += 1
            claims.append(Claim(job, self.claims))
        return claims

    async def settle(self, endings: Sequence[Ending[int]]) -> Sequence[bool]:
        for ending in endings:
            self.endings.append(ending)
            ending.lease.job.end_attempt(ending.end)
            if ending.end.state is JobState.PENDING:
                self.ready.append(ending.lease.job.id)
        return [self.holds] * len(endings)

    async def extend(self, leases: Sequence[Lease[int]]) -> Sequence[bool]:
        await self.extending.wait()
        return [self.keeps] * len(leases)


class Worker:
    """A consumer and the revocations it was sent."""

    def __init__(self, leases: Leases[int], lease: float = 30.0, name: str = "w") -> None:
        self.revoked: asyncio.Queue[Revocation] = asyncio.Queue()
        self.consumer = Consumer(name, ("default",), frozenset(), lease, self.revoked.put_nowait)
        leases.connect(self.consumer)


def new_job(max_retries: int = 3, timeout: float | None = None) -> NewJob:
    return NewJob("default", "t", b"{}", "application/json", {}, max_retries, timeout, "", None, "")


RETRY = RetrySettings(initial_backoff=timedelta(seconds=10), multiplier=2, jitter=0)


@pytest.fixture
def backend() -> DictBackend:
    return DictBackend()


@pytest.fixture
def leases(backend: DictBackend) -> Leases[int]:
    return Leases(backend, RetryPolicy(RETRY), backend.events)


async def leased(
    leases: Leases[int], backend: DictBackend, worker: Worker, job: NewJob | None = None
) -> str:
    await backend.insert([job or new_job()])
    [delivery] = await leases.receive(worker.consumer, 1)
    return delivery.lease_id


async def test_lease_ids_name_job_and_attempt_and_acks_complete(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    lease_id = await leased(leases, backend, worker)
    job = next(iter(backend.jobs.values()))
    assert lease_id == f"{job.id}.1"
    assert leases.in_use(worker.consumer) == 1
    [outcome] = await leases.ack(worker.consumer, [AckRequest(lease_id, b"42", "text/plain")])
    assert (outcome.ok, outcome.state, outcome.job) == (True, JobState.COMPLETED, job)
    [ending] = backend.endings
    assert (ending.lease.handle, ending.end.result, job.state) == (1, b"42", JobState.COMPLETED)
    assert leases.in_use(worker.consumer) == 0


async def test_failures_retry_after_the_backoff_until_the_last_attempt(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    lease_id = await leased(leases, backend, worker, new_job(max_retries=1))
    failure = job_pb2.JobFailure(message="boom")
    before = time.time()
    [outcome] = await leases.nack(worker.consumer, [NackRequest(lease_id, failure, True, None)])
    assert outcome.state is JobState.FAILED
    end = backend.endings[-1].end
    assert end.run_at is not None
    assert before + 10 <= end.run_at <= time.time() + 10
    assert outcome.job is not None
    backend.ready.append(outcome.job.id)  # this backend has no timers: due now
    [again] = await leases.receive(worker.consumer, 1)
    assert again.lease_id.endswith(".2")
    [last] = await leases.nack(worker.consumer, [NackRequest(again.lease_id, failure, True, 0.5)])
    assert last.state is JobState.DEAD


async def test_a_non_retryable_failure_is_dead_at_once(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    lease_id = await leased(leases, backend, worker)
    failure = job_pb2.JobFailure(message="bad input")
    [outcome] = await leases.nack(worker.consumer, [NackRequest(lease_id, failure, False, None)])
    assert outcome.state is JobState.DEAD


async def test_an_expired_lease_goes_back_and_keeps_its_credit_until_answered(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases, lease=0.05)
    lease_id = await leased(leases, backend, worker)
    revoked = await asyncio.wait_for(worker.revoked.get(), 5)
    assert (revoked.lease_id, revoked.reason) == (lease_id, RevokeReason.EXPIRED)
    assert leases.in_use(worker.consumer) == 1  # it owes an answer: no more work
    await eventually(lambda: bool(backend.endings))
    assert backend.endings[-1].end.state is JobState.PENDING
    assert backend.endings[-1].end.failure is not None
    assert backend.endings[-1].end.failure.type == "LEASE_EXPIRED"
    [late] = await leases.ack(worker.consumer, [AckRequest(lease_id)])
    assert (late.ok, late.reason) == (False, "LEASE_EXPIRED")
    assert leases.in_use(worker.consumer) == 0


async def test_the_timeout_fails_the_attempt(leases: Leases[int], backend: DictBackend) -> None:
    worker = Worker(leases)
    await leased(leases, backend, worker, new_job(timeout=0.05))
    revoked = await asyncio.wait_for(worker.revoked.get(), 5)
    assert revoked.reason is RevokeReason.TIMED_OUT
    await eventually(lambda: bool(backend.endings))
    assert backend.endings[-1].end.state is JobState.FAILED
    assert leases.in_use(worker.consumer) == 0  # a timeout keeps no credit


async def test_a_disconnect_puts_every_lease_back_and_the_last_attempt_dies(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    await backend.insert([new_job(), new_job(max_retries=0)])
    assert len(await leases.receive(worker.consumer, 2)) == 2
    await leases.disconnect(worker.consumer)
    states = sorted(ending.end.state.name for ending in backend.endings)
    assert states == ["DEAD", "PENDING"]
    assert all(e.end.failure and e.end.failure.type == "WORKER_LOST" for e in backend.endings)
    assert leases.leased == 0


async def test_answers_for_leases_not_held_say_why(
    leases: Leases[int], backend: DictBackend
) -> None:
    mine, other = Worker(leases, name="mine"), Worker(leases, name="other")
    lease_id = await leased(leases, backend, other)
    [foreign, unknown] = await leases.ack(
        mine.consumer, [AckRequest(lease_id), AckRequest("nope.1")]
    )
    assert (foreign.ok, foreign.reason) == (False, "LEASE_NOT_FOUND")
    assert "another worker session" in foreign.message
    assert (unknown.reason, unknown.message) == ("LEASE_NOT_FOUND", "no such lease")
    assert leases.in_use(other.consumer) == 1


async def test_cancelling_a_leased_job_revokes_its_lease_first(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    lease_id = await leased(leases, backend, worker)
    job_id = lease_id.rpartition(".")[0]
    cancelled = await leases.cancel(job_id, "not needed")
    assert cancelled.state is JobState.CANCELLED
    revoked = worker.revoked.get_nowait()
    assert (revoked.reason, revoked.message) == (
        RevokeReason.CANCELLED,
        "job cancelled: not needed",
    )
    [lease] = backend.cancelled_with
    assert lease is not None
    assert lease.id == lease_id
    [late] = await leases.ack(worker.consumer, [AckRequest(lease_id)])
    assert late.reason == "LEASE_REVOKED"


async def test_an_extension_holds_from_its_arrival_whatever_the_backend_takes(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases, lease=0.2)
    lease_id = await leased(leases, backend, worker)
    backend.extending.clear()
    extension = asyncio.create_task(leases.extend(worker.consumer, [lease_id], 30.0))
    with pytest.raises(TimeoutError):  # past the first lease, while the backend answers
        await asyncio.wait_for(worker.revoked.get(), 0.5)
    backend.extending.set()
    [(extended_id, expiry)] = await extension
    assert extended_id == lease_id
    assert expiry is not None
    assert expiry > time.time() + 25


async def test_a_lease_the_backend_lost_is_dropped_on_extension(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    lease_id = await leased(leases, backend, worker)
    backend.keeps = False
    assert await leases.extend(worker.consumer, [lease_id], 30.0) == [(lease_id, None)]
    assert leases.in_use(worker.consumer) == 0


async def test_an_answer_the_backend_fences_is_not_applied(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    lease_id = await leased(leases, backend, worker)
    backend.holds = False
    [outcome] = await leases.ack(worker.consumer, [AckRequest(lease_id)])
    assert (outcome.ok, outcome.reason) == (False, "LEASE_EXPIRED")


async def test_a_job_the_backend_took_back_is_revoked(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases)
    lease_id = await leased(leases, backend, worker)
    job_id = lease_id.rpartition(".")[0]
    assert list(leases.leased_job_ids()) == [job_id]
    leases.lost(job_id, RevokeReason.CANCELLED, "cancelled through another gateway")
    revoked = worker.revoked.get_nowait()
    assert revoked.message == "cancelled through another gateway"
    assert leases.leased == 0
    assert not backend.endings  # storage already knows


async def test_free_credits_are_what_a_connected_consumer_does_not_use(
    leases: Leases[int], backend: DictBackend
) -> None:
    worker = Worker(leases, lease=0.05)
    worker.consumer.credits = 3
    assert backend.host.free_credits(worker.consumer) == 3
    await leased(leases, backend, worker)
    assert backend.host.free_credits(worker.consumer) == 2
    await asyncio.wait_for(worker.revoked.get(), 5)  # expired, still owes its answer
    assert backend.host.free_credits(worker.consumer) == 2
    worker.consumer.draining = True
    assert backend.host.free_credits(worker.consumer) == 0
    worker.consumer.draining = False
    await leases.disconnect(worker.consumer)
    assert backend.host.free_credits(worker.consumer) == 0
