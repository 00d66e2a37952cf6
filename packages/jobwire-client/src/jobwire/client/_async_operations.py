"""`AsyncClient`'s operator methods; see `_sync_operations.py`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from jobwire.client._async_calls import AsyncCalls
from jobwire.client._models import Job, JobState
from jobwire.client._operations import (
    KEEP,
    WorkerInfo,
    job_selector,
    purge_request,
    retry_jobs_request,
    retry_request,
)
from jobwire.client._queue_config import KeyPolicy, QueueConfig, update_request
from jobwire.client._queue_stats import QueueStats
from jobwire.v1 import queue_service_pb2 as Q
from jobwire.v1 import worker_service_pb2 as W


class AsyncOperations(AsyncCalls):
    """The operator methods of `AsyncClient` (the gateway's admin role, except `list_workers`)."""

    async def retry_job(
        self, job_or_id: Job | str, *, payload: Any = KEEP, max_retries: int | None = None
    ) -> Job:
        """See `Client.retry_job`."""
        request = retry_request(job_or_id, payload, self._serializer, max_retries)
        return self._job((await self._call(self._connect().queue.RetryJob, request)).job)

    async def retry_jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        states: Iterable[JobState | str] | None = None,
        error_contains: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        ids: Iterable[Job | str] | None = None,
        attributes: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> int:
        """See `Client.retry_jobs`."""
        request = retry_jobs_request(
            request_id,
            job_selector(
                queue=queue,
                type=type,
                states=states,
                error_contains=error_contains,
                created_after=created_after,
                created_before=created_before,
                ids=ids,
                attributes=attributes,
            ),
        )
        return (await self._call(self._connect().queue.RetryJobs, request)).count

    async def purge_jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        states: Iterable[JobState | str] | None = None,
        error_contains: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        ids: Iterable[Job | str] | None = None,
        attributes: Mapping[str, str] | None = None,
        all: bool = False,
        include_processing: bool = False,
        dry_run: bool = False,
    ) -> int:
        """See `Client.purge_jobs`."""
        request = purge_request(
            job_selector(
                queue=queue,
                type=type,
                states=states,
                error_contains=error_contains,
                created_after=created_after,
                created_before=created_before,
                ids=ids,
                attributes=attributes,
            ),
            all=all,
            include_processing=include_processing,
            dry_run=dry_run,
        )
        return (await self._call(self._connect().queue.PurgeJobs, request)).count

    async def pause_queue(self, queue: str) -> QueueStats:
        """See `Client.pause_queue`."""
        request = Q.PauseQueueRequest(queue=queue)
        return QueueStats.from_proto(
            (await self._call(self._connect().queue.PauseQueue, request)).stats
        )

    async def resume_queue(self, queue: str) -> QueueStats:
        """See `Client.resume_queue`."""
        request = Q.ResumeQueueRequest(queue=queue)
        return QueueStats.from_proto(
            (await self._call(self._connect().queue.ResumeQueue, request)).stats
        )

    async def get_queue_config(self, queue: str) -> QueueConfig:
        """See `Client.get_queue_config`."""
        request = Q.GetQueueConfigRequest(queue=queue)
        response = await self._call(self._connect().queue.GetQueueConfig, request)
        return QueueConfig.from_proto(response.config)

    async def update_queue_config(
        self,
        queue: str,
        *,
        max_concurrency_per_key: int | None = KEEP,  # type: ignore[assignment]  # a sentinel
        max_concurrency: int | None = KEEP,  # type: ignore[assignment]
        rate: str | None = KEEP,  # type: ignore[assignment]
        burst: int = KEEP,  # type: ignore[assignment]
        on_busy_key: KeyPolicy = KEEP,  # type: ignore[assignment]
        key_weights: Mapping[str, int] | None = KEEP,  # type: ignore[assignment]
        fifo_across_keys: bool = KEEP,  # type: ignore[assignment]
    ) -> QueueConfig:
        """See `Client.update_queue_config`."""
        request = update_request(
            queue,
            max_concurrency_per_key=max_concurrency_per_key,
            max_concurrency=max_concurrency,
            rate=rate,
            burst=burst,
            on_busy_key=on_busy_key,
            key_weights=key_weights,
            fifo_across_keys=fifo_across_keys,
        )
        response = await self._call(self._connect().queue.UpdateQueueConfig, request)
        return QueueConfig.from_proto(response.config)

    async def list_queue_configs(self) -> list[QueueConfig]:
        """See `Client.list_queue_configs`."""
        request = Q.ListQueueConfigsRequest()
        response = await self._call(self._connect().queue.ListQueueConfigs, request)
        return [QueueConfig.from_proto(config) for config in response.configs]

    async def list_workers(self, queue: str | None = None) -> list[WorkerInfo]:
        """See `Client.list_workers`."""
        request = W.ListWorkersRequest(queue=queue or "")
        response = await self._call(self._connect().workers.ListWorkers, request)
        return [WorkerInfo.from_proto(worker) for worker in response.workers]

    async def drain_worker(self, worker_id: str, *, session_id: str | None = None) -> int:
        """See `Client.drain_worker`."""
        request = W.DrainWorkerRequest(worker_id=worker_id, session_id=session_id or "")
        return (await self._call(self._connect().workers.DrainWorker, request)).drained
