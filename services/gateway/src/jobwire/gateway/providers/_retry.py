"""What happens after a failed or lost attempt: retry after a backoff, or dead.

The rule of DESIGN.md's semantics table, written once: a job whose attempt
number exceeds its ``max_retries`` is dead, and so is one whose failure is
not retryable; otherwise a failed attempt is retried after an exponential
backoff with jitter, and a lost one (its lease expired, its worker's stream
dropped) is available again at once.
"""

from __future__ import annotations

import random

from jobwire.gateway._models import AttemptEnd, Failure, JobRecord, JobState
from jobwire.gateway._provider_config import RetrySettings


def exhausted(attempt: int, max_retries: int) -> bool:
    """Whether attempt number ``attempt`` was the last a job with ``max_retries`` has."""
    return attempt > max_retries


class RetryPolicy:
    """Exponential backoff with jitter between attempts of a failed job."""

    def __init__(self, settings: RetrySettings) -> None:
        self._initial = settings.initial_backoff.total_seconds()
        self._max = settings.max_backoff.total_seconds()
        self._multiplier = settings.multiplier
        self._jitter = settings.jitter

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retrying after failed attempt number ``attempt``."""
        delay = min(self._max, self._initial * self._multiplier ** max(0, attempt - 1))
        return delay * (1 - self._jitter * random.random())  # not security

    def after_failure(
        self, job: JobRecord, failure: Failure, now: float, delay: float | None = None
    ) -> AttemptEnd:
        """A failed attempt: retried after ``delay`` (default: the backoff), or dead."""
        if not failure.retryable or exhausted(job.attempt, job.max_retries):
            return AttemptEnd(JobState.DEAD, now, failure)
        wait = self.backoff(job.attempt) if delay is None else delay
        return AttemptEnd(JobState.FAILED, now, failure, run_at=now + wait)

    @staticmethod
    def after_loss(job: JobRecord, failure: Failure, now: float) -> AttemptEnd:
        """An attempt lost without an answer: available again at once, or dead."""
        dead = exhausted(job.attempt, job.max_retries)
        return AttemptEnd(JobState.DEAD if dead else JobState.PENDING, now, failure)
