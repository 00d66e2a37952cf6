"""What operators ask: replay and purge jobs, pause queues, list and drain workers.

The middle layer of :class:`~jobwire.gateway._service.JobService`: each
request is validated here and answered by the lease state machine (which
revokes the leases of purged jobs), the provider or the worker directory.
"""

from __future__ import annotations

from dataclasses import replace

from jobwire.gateway._errors import InvalidArgumentError, JobNotRetryableError
from jobwire.gateway._flow_requests import FlowRequests
from jobwire.gateway._models import REPLAYABLE, JobRecord, JobState, states_text
from jobwire.gateway._validation import (
    MAX_RETRIES_LIMIT,
    job_selector,
    require_id,
    validate_queue_name,
)
from jobwire.gateway.providers import QueueCounts, WorkerInfo
from jobwire.v1 import queue_service_pb2


class OperatorRequests(FlowRequests):
    """Operators' requests, on top of the producers' ones."""

    async def retry_job(self, request: queue_service_pb2.RetryJobRequest) -> JobRecord:
        """Replay one dead, failed or cancelled job, optionally with a new payload."""
        job_id = require_id(request.id)
        payload = request.payload if request.HasField("payload") else None
        if payload is not None:
            self.validate.payload(payload, "payload")
        max_retries = request.max_retries if request.HasField("max_retries") else None
        if max_retries is not None and not 0 <= max_retries <= MAX_RETRIES_LIMIT:
            raise InvalidArgumentError("max_retries", f"must be between 0 and {MAX_RETRIES_LIMIT}")
        return await self.leases.replay(job_id, payload, max_retries)

    async def retry_jobs(self, request: queue_service_pb2.RetryJobsRequest) -> int:
        """Replay every selected dead, failed or cancelled job.

        With no states: dead jobs, or, when the selector names ids, the named
        jobs in every state this provider replays.
        """
        selector = job_selector(request.selector)
        if not selector.states:
            default = self.provider.replayable if selector.ids else {JobState.DEAD}
            selector = replace(selector, states=frozenset(default))
        elif not selector.states <= REPLAYABLE:
            raise InvalidArgumentError(
                "selector.states", "only dead, failed and cancelled jobs can be retried"
            )
        elif not selector.states <= self.provider.replayable:
            names = states_text(self.provider.replayable)
            raise JobNotRetryableError("", "", names)
        if len(request.request_id) > 256:
            raise InvalidArgumentError("request_id", "at most 256 characters")
        return await self.provider.replay_jobs(selector, request.request_id)

    async def purge_jobs(self, request: queue_service_pb2.PurgeJobsRequest) -> int:
        """Delete the selected jobs, or count them with ``validate_only``.

        The jobs the scheduler holds for later (and those cancelled there) are
        deleted first, so that one handed to the provider meanwhile is met there.
        """
        selector = job_selector(request.selector)
        if selector.empty and not request.all:
            raise InvalidArgumentError(
                "selector",
                "is empty: name a queue, type, state, error, time range or ids, or set all",
            )
        if JobState.PROCESSING in selector.states and not request.include_processing:
            raise InvalidArgumentError(
                "selector.states",
                "processing jobs are purged only with include_processing (their leases are"
                " revoked)",
            )
        held = 0
        if self.scheduler is not None:
            held = await self.scheduler.purge_held(selector, validate_only=request.validate_only)
        return held + await self.leases.purge(
            selector,
            include_processing=request.include_processing,
            validate_only=request.validate_only,
        )

    async def pause_queue(self, queue: str, paused: bool) -> QueueCounts:
        """Pause or resume deliveries from one queue; return its counts."""
        if not queue:
            raise InvalidArgumentError("queue", "is required")
        name = validate_queue_name(queue, "queue")
        await self.provider.set_paused(name, paused)
        [row] = await self.stats(name)
        return row

    async def list_workers(self, queue: str) -> list[WorkerInfo]:
        """Worker streams of every gateway sharing the provider."""
        name = validate_queue_name(queue, "queue") if queue else ""
        return await self.workers.list(name)

    async def drain_worker(self, worker_id: str, session_id: str) -> int:
        """Ask a worker's streams to finish their jobs and disconnect, on any gateway."""
        if not worker_id:
            raise InvalidArgumentError("worker_id", "is required (see ListWorkers)")
        return await self.workers.drain(worker_id, session_id)
