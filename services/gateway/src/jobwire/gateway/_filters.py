"""Which jobs a bulk operation (replay, purge) applies to."""

from __future__ import annotations

from dataclasses import dataclass

from jobwire.gateway._models import JobRecord, JobState


@dataclass(frozen=True, slots=True)
class JobSelector:
    """Which jobs a bulk operation (replay, purge) applies to; empty fields match all."""

    queue: str = ""
    type: str = ""
    states: frozenset[JobState] = frozenset()
    error_contains: str = ""
    created_after: float | None = None
    created_before: float | None = None

    @property
    def empty(self) -> bool:
        """Whether the selector matches every job."""
        return self == JobSelector()

    def matches(self, job: JobRecord) -> bool:
        """Whether ``job`` is selected."""
        if self.queue and job.queue != self.queue:
            return False
        if self.type and job.type != self.type:
            return False
        if self.states and job.state not in self.states:
            return False
        if self.error_contains and (
            job.last_error is None or self.error_contains not in job.last_error.message
        ):
            return False
        if self.created_after is not None and job.create_time < self.created_after:
            return False
        return self.created_before is None or job.create_time < self.created_before
