"""Flow control in the service: queue configs, key policies, why a job waits.

A layer of :class:`~jobwire.gateway._service.JobService` above the producers'
requests. The limits live in the provider (it enforces them in ``claim``,
:mod:`jobwire.gateway.providers._flow`); here they are read and changed
(``GetQueueConfig``, ``UpdateQueueConfig``, the ``[queues.NAME]`` tables at
start), refused on providers that cannot enforce them, and the key policies
act on every job stored: ``cancel_newest`` cancels a new job whose key
already has its limit of pending and processing jobs, ``cancel_in_progress``
cancels the key's oldest ones instead (a processing one through its lease,
like ``CancelJob``).
"""

from __future__ import annotations

from collections.abc import Sequence

from jobwire.gateway._errors import (
    FlowControlUnsupportedError,
    GatewayError,
    InvalidArgumentError,
    StartError,
)
from jobwire.gateway._job_requests import JobRequests
from jobwire.gateway._limits import KeyPolicy, QueueLimits
from jobwire.gateway._models import JobRecord, JobState, NewJob
from jobwire.gateway._queue_configs import to_proto, updated
from jobwire.gateway._validation import validate_queue_name
from jobwire.v1 import flow_control_pb2, queue_service_pb2


class FlowRequests(JobRequests):
    """Queue configs and key policies, on top of the producers' requests."""

    async def open(self) -> None:
        """Open the provider and the scheduler, then apply the ``[queues.NAME]`` tables.

        A provider without flow control is refused limits before it opens.
        """
        tables = {name: table.limits() for name, table in sorted(self.settings.queues.items())}
        tables = {name: limits for name, limits in tables.items() if not limits.empty}
        if tables and not self.provider.supports_flow_control:
            name = next(iter(tables))
            raise StartError(
                f"[queues.{name}]: the {self._provider_type} provider does not enforce "
                "flow control yet (memory, SQLite and PostgreSQL do); remove the table",
                key=f"queues.{name}",
            )
        await super().open()  # before the server serves: no claim runs without the limits
        for name, limits in tables.items():
            await self.provider.set_limits(name, limits)

    # Queue configs -------------------------------------------------------------

    async def queue_config(self, queue: str) -> flow_control_pb2.QueueConfig:
        """A queue's flow control (no limits when never configured)."""
        if not queue:
            raise InvalidArgumentError("queue", "is required")
        name = validate_queue_name(queue, "queue")
        return to_proto(name, await self.provider.queue_limits(name))

    async def update_queue_config(
        self, request: queue_service_pb2.UpdateQueueConfigRequest
    ) -> flow_control_pb2.QueueConfig:
        """Change a queue's flow control; claims honour it at once."""
        if not request.config.queue:
            raise InvalidArgumentError("config.queue", "is required: the queue to configure")
        name = validate_queue_name(request.config.queue, "config.queue")
        limits = updated(
            await self.provider.queue_limits(name), request.config, request.update_mask
        )
        if not self.provider.supports_flow_control:
            raise FlowControlUnsupportedError("config", self._provider_type)
        await self.provider.set_limits(name, limits)
        return to_proto(name, limits)

    async def queue_configs(self) -> list[flow_control_pb2.QueueConfig]:
        """Every configured queue's flow control, sorted by name."""
        found = await self.provider.limits()
        return [to_proto(name, found[name]) for name in sorted(found)]

    async def waiting_reason(self, job: JobRecord) -> str:
        """Why a pending job is not delivered yet, when a limit holds it; else empty."""
        if job.state is not JobState.PENDING or not self.provider.supports_flow_control:
            return ""
        hold = await self.provider.hold(job)
        return hold.text if hold is not None else ""

    # Key policies ----------------------------------------------------------------

    async def submit(self, jobs: Sequence[NewJob]) -> list[tuple[JobRecord, bool]]:
        """Store jobs, then apply their queues' key policies."""
        results = await super().submit(jobs)
        if self.provider.supports_flow_control and any(job.concurrency_key for job in jobs):
            await self._apply_key_policies(results)
        return results

    async def _apply_key_policies(self, results: list[tuple[JobRecord, bool]]) -> None:
        """Cancel what ``cancel_newest`` / ``cancel_in_progress`` say; update ``results``."""
        stored: dict[tuple[str, str], list[int]] = {}
        for i, (job, deduplicated) in enumerate(results):
            if job.concurrency_key and not deduplicated:
                stored.setdefault((job.queue, job.concurrency_key), []).append(i)
        for (queue, key), indexes in stored.items():
            limits = await self.provider.queue_limits(queue)
            if limits.on_busy_key is KeyPolicy.QUEUE or not limits.max_concurrency_per_key:
                continue
            active = await self.provider.key_jobs(queue, key)
            excess = len(active) - limits.max_concurrency_per_key
            if excess <= 0:
                continue
            new = {results[i][0].id: i for i in indexes}
            if limits.on_busy_key is KeyPolicy.CANCEL_NEWEST:
                victims = [job for job in reversed(active) if job.id in new][:excess]
                reason = _busy(queue, key, limits)
            else:
                victims = active[:excess]
                newest = results[indexes[-1]][0].id
                reason = (
                    f"replaced by job {newest}, newer, of concurrency key {key}: queue "
                    f"{queue} has on_busy_key = cancel_in_progress"
                )
            for victim in victims:
                try:
                    record = await self.leases.cancel(victim.id, reason)
                except GatewayError:
                    continue  # finished meanwhile: nothing to cancel
                if victim.id in new:
                    results[new[victim.id]] = (record, False)


def _busy(queue: str, key: str, limits: QueueLimits) -> str:
    limit = limits.max_concurrency_per_key
    return (
        f"concurrency key {key} already has {limit} of {limit} jobs pending or processing: "
        f"queue {queue} has on_busy_key = cancel_newest"
    )
