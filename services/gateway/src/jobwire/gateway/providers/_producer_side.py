"""The producers' and operators' side of the lease state machine.

What producers and operators do to jobs that may be leased on this gateway
(the middle layer of :mod:`._leases`, on the table of :mod:`._lease_table`):
a cancellation revokes the job's lease first, a purge revokes the leases of
the purged jobs that were processing, a replay is refused for a job in the
wrong state, and the counts name this gateway's workers and the pending
types none of them takes.
"""

from __future__ import annotations

from jobwire.gateway._errors import JobNotFoundError, JobNotRetryableError, JobTerminalError
from jobwire.gateway._filters import JobSelector
from jobwire.gateway._models import JobFilter, JobRecord, JobState, states_text
from jobwire.gateway.providers._lease_table import LeaseTable
from jobwire.gateway.providers._types import H, QueueCounts, RevokeReason


class ProducerSide(LeaseTable[H]):
    """Jobs read, cancelled, replayed and purged through the lease table."""

    async def cancel(self, job_id: str, reason: str) -> JobRecord:
        """Cancel a job; one leased here has its lease revoked first.

        A cancelled job is returned unchanged. Raises ``JobNotFoundError``, or
        ``JobTerminalError`` for a completed or dead job.
        """
        message = reason or "cancelled"
        lease = self._by_job.get(job_id)
        if lease is not None:
            self._forget(lease)
            self._revoke(lease, RevokeReason.CANCELLED, f"job cancelled: {message}")
        record = await self.provider.cancel(job_id, message, lease)
        if record is None:
            raise JobNotFoundError(job_id)
        if record.state is not JobState.CANCELLED:
            raise JobTerminalError(job_id, record.state.name)
        self.events.publish(record)
        return record

    async def replay(
        self, job_id: str, payload: bytes | None, max_retries: int | None
    ) -> JobRecord:
        """Replay one dead, failed or cancelled job.

        Raises ``JobNotFoundError``, or ``JobNotRetryableError`` for a job in
        another state.
        """
        replayed = await self.provider.replay(job_id, payload, max_retries)
        if replayed is None:
            raise JobNotFoundError(job_id)
        record, done = replayed
        if not done:
            names = states_text(self.provider.replayable)
            raise JobNotRetryableError(job_id, record.state.name, names)
        self.events.publish(record)
        return record

    async def purge(
        self, selector: JobSelector, *, include_processing: bool, validate_only: bool
    ) -> int:
        """Delete the selected jobs; revoke this gateway's leases on those processing."""
        purged = await self.provider.purge(
            selector, include_processing=include_processing, validate_only=validate_only
        )
        if not validate_only:
            for job_id in purged.processing:
                self.lost(job_id, RevokeReason.CANCELLED, "job purged")
        return purged.count

    async def stats(self, queue: str | None) -> list[QueueCounts]:
        """The provider's counts, with this gateway's workers on each queue."""
        rows = {row.queue: row for row in await self.provider.counts(queue)}
        names = [queue] if queue is not None else [q for q, n in self._workers.items() if n]
        for name in names:
            if name not in rows:
                rows[name] = QueueCounts(name, dict.fromkeys(JobState, 0), 0.0)
        for row in rows.values():
            row.workers = self._workers[row.queue]
            consumers = [c for c in self._holders if row.queue in c.queues]
            row.unserved_types = tuple(
                sorted(t for t in row.pending_types if not any(c.accepts(t) for c in consumers))
            )
        return [rows[name] for name in sorted(rows)]

    async def get(self, job_id: str) -> JobRecord | None:
        """Return a job from the provider, or None."""
        return await self.provider.get(job_id)

    async def list_jobs(
        self, where: JobFilter, limit: int, cursor: str | None
    ) -> tuple[list[JobRecord], str | None]:
        """Return a page of the provider's jobs."""
        return await self.provider.list_jobs(where, limit, cursor)
