"""Where the scheduler hands due jobs: the gateway's enqueue path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from jobwire.gateway._models import JobRecord, NewJob


class JobSink(Protocol):
    """Where due jobs go: the gateway's enqueue path (``JobService``)."""

    @property
    def max_native_delay(self) -> float | None:
        """Longest delay the queue provider holds itself; None means any."""
        ...

    async def submit(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Enqueue validated jobs that are due now."""
        ...

    async def cancel_job(self, job_id: str, reason: str) -> JobRecord:
        """Cancel a job wherever it is."""
        ...
