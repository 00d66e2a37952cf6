"""Which jobs a bulk operation (replay, purge) or a ``WatchJobs`` stream applies to."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

from jobwire.gateway._models import JobRecord, JobState

MAX_SELECTED_IDS = 1000
"""Most ids one selector names (``JobSelector.ids``)."""
_Job = TypeVar("_Job", bound=JobRecord)


@dataclass(frozen=True, slots=True)
class JobSelector:
    """Which jobs a bulk operation (replay, purge) or a watch applies to; empty fields match all."""

    queue: str = ""
    type: str = ""
    states: frozenset[JobState] = frozenset()
    error_contains: str = ""
    created_after: float | None = None
    created_before: float | None = None
    ids: frozenset[str] = frozenset()
    """Only these jobs (full ids); empty: any job."""
    attributes: tuple[tuple[str, str], ...] = ()
    """Only jobs with each of these (key, value) attributes, sorted by key."""

    @property
    def empty(self) -> bool:
        """Whether the selector matches every job."""
        return self == JobSelector()

    def among(self, jobs: Mapping[str, _Job]) -> Iterator[_Job]:
        """The candidates in ``jobs`` (by id): the named ones when ids are given, else all.

        Only a pre-selection: ``matches`` still decides.
        """
        if not self.ids:
            yield from jobs.values()
            return
        for job_id in sorted(self.ids):
            job = jobs.get(job_id)
            if job is not None:
                yield job

    def matches(self, job: JobRecord) -> bool:
        """Whether ``job`` is selected."""
        if self.ids and job.id not in self.ids:
            return False
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
        if self.created_before is not None and job.create_time >= self.created_before:
            return False
        return all(job.attributes.get(key) == value for key, value in self.attributes)
