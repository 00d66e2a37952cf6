"""Deduplication keys and request ids: one rule, wherever a job is held.

Every store of jobs (the memory provider, the SQS provider's records, the SQL
providers, the scheduler) looks up the jobs that already hold the request ids
and keys of a batch, in its own way, and lets :meth:`DedupRule.admit` decide:

* a **request id** seen before returns the job it created, whatever its state
  (an enqueue retried after a lost answer is the same enqueue);
* a **deduplication key** returns the job holding it while that job is not
  finished, or finished less than ``window`` seconds ago;
* within one batch, later duplicates of an earlier job collapse onto it.

A store several gateways share (a database) cannot see a concurrent enqueue
of the same request id or key before it commits: its unique index refuses
the loser, which runs its transaction again (:func:`admit_again`) and then
finds the winner's job, a duplicate.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy.exc import IntegrityError

from jobwire.gateway._errors import UnavailableError
from jobwire.gateway._models import JobRecord, NewJob

T = TypeVar("T")

INSERT_TRIES = 3
"""Runs of an enqueue's transaction while concurrent enqueues of its keys win the race."""


@dataclass(frozen=True, slots=True)
class DedupRule:
    """The deduplication rule, with the window of its store."""

    window: float = 0.0
    """Seconds a finished job keeps its deduplication key."""

    def holds(self, holder: JobRecord, now: float) -> bool:
        """Whether ``holder`` still holds its deduplication key at ``now``."""
        if not holder.state.is_terminal:
            return True
        return holder.end_time is not None and now < holder.end_time + self.window

    def admit(
        self,
        jobs: Sequence[NewJob],
        now: float,
        create: Callable[[NewJob], JobRecord],
        *,
        by_request: Mapping[str, JobRecord] | None = None,
        by_key: Mapping[str, JobRecord] | None = None,
    ) -> list[tuple[JobRecord, bool]]:
        """Decide each job of a batch: an existing job (True) or a new one (False).

        Args:
            jobs: the batch, validated.
            now: the time of the enqueue (epoch seconds).
            create: makes the record of a job to store (not stored yet).
            by_request: jobs that hold the batch's request ids, as stored.
            by_key: jobs that hold the batch's deduplication keys, as stored.
        """
        requests = dict(by_request or {})
        keys = {key: job for key, job in (by_key or {}).items() if self.holds(job, now)}
        results: list[tuple[JobRecord, bool]] = []
        for new in jobs:
            existing = requests.get(new.request_id) if new.request_id else None
            if existing is None and new.deduplication_key:
                existing = keys.get(new.deduplication_key)
            if existing is not None:
                results.append((existing, True))
                continue
            record = create(new)
            results.append((record, False))
            if new.request_id:
                requests[new.request_id] = record
            if new.deduplication_key:
                keys[new.deduplication_key] = record
        return results


def lookups(jobs: Sequence[NewJob]) -> tuple[set[str], set[str]]:
    """The request ids and deduplication keys of a batch, for a store to look up."""
    return (
        {job.request_id for job in jobs if job.request_id},
        {job.deduplication_key for job in jobs if job.deduplication_key},
    )


async def admit_again(insert: Callable[[], Awaitable[T]], what: str) -> T:
    """Run ``insert`` (look up the holders, ``admit``, store) until no concurrent enqueue wins.

    ``insert`` is one transaction; a unique index that refuses it
    (``IntegrityError``) means another gateway stored a job of the same
    request id or key meanwhile, and the next run returns that job.

    Raises:
        UnavailableError: ``INSERT_TRIES`` runs all collided (``what`` names the store).
    """
    for attempt in range(1, INSERT_TRIES + 1):
        try:
            return await insert()
        except IntegrityError:
            if attempt == INSERT_TRIES:
                raise UnavailableError(
                    f"{what}: concurrent enqueues of the same key kept colliding"
                ) from None
    raise AssertionError("unreachable")
