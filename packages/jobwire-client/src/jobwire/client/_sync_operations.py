"""`Client`'s operator methods: replay, purge, pause, resume and configure queues, workers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

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
from jobwire.client._sync_calls import SyncCalls
from jobwire.v1 import queue_service_pb2 as Q
from jobwire.v1 import worker_service_pb2 as W


class SyncOperations(SyncCalls):
    """The operator methods of `Client` (the gateway's admin role, except `list_workers`)."""

    def retry_job(
        self, job_or_id: Job | str, *, payload: Any = KEEP, max_retries: int | None = None
    ) -> Job:
        """Runs a dead, failed or cancelled job again, as a new series of attempts.

        The job keeps its id and the errors of its earlier attempts.

        Args:
            job_or_id: The job or its id.
            payload: A new payload, encoded like `enqueue`'s; by default the job's.
            max_retries: New retries for the replay; None keeps the job's.

        Raises:
            JobNotRetryableError: The job is pending, scheduled, processing or completed.
            JobNotFoundError: No job has this id.
        """
        request = retry_request(job_or_id, payload, self._serializer, max_retries)
        return self._job(self._call(self._queue.RetryJob, request).job)

    def retry_jobs(
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
        """Runs every matching dead (or failed, cancelled) job again, in one gateway call.

        Safe to retry: a second call with the same `request_id` replays nothing more.

        Args:
            queue: Only jobs of this queue.
            type: Only jobs of this type.
            states: Which of dead, failed and cancelled jobs to replay; None
                means dead ones, or, with `ids`, every state the gateway's
                provider replays.
            error_contains: Only jobs whose last error's message contains this.
            created_after: Only jobs created at or after this aware time.
            created_before: Only jobs created before this aware time.
            ids: Only these jobs (full ids or `Job`s, at most 1000); the
                other filters still apply. A named job in another state is
                left alone and not counted.
            attributes: Only jobs carrying each of these attributes with this value.
            request_id: Idempotency key; a new one by default.

        Returns:
            How many jobs are pending again.

        Raises:
            InvalidArgumentError: More than 1000 ids, or a bad filter.
        """
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
        return self._call(self._queue.RetryJobs, request).count

    def purge_jobs(
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
        """Deletes the matching jobs (never processing ones unless `include_processing`).

        Args:
            queue: Only jobs of this queue.
            type: Only jobs of this type.
            states: Only jobs in these states; None means pending, scheduled,
                failed, dead, cancelled and completed.
            error_contains: Only jobs whose last error's message contains this.
            created_after: Only jobs created at or after this aware time.
            created_before: Only jobs created before this aware time.
            ids: Only these jobs (full ids or `Job`s, at most 1000); the
                other filters still apply.
            attributes: Only jobs carrying each of these attributes with this value.
            all: Required when no filter is given: every job of every queue.
            include_processing: Also delete running jobs; their workers are told to stop.
            dry_run: Count what would be deleted, delete nothing.

        Returns:
            How many jobs were (or would be) deleted.

        Raises:
            InvalidArgumentError: No filter and not `all`, or more than 1000 ids.
        """
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
        return self._call(self._queue.PurgeJobs, request).count

    def pause_queue(self, queue: str) -> QueueStats:
        """Stops deliveries from `queue` on every gateway; it still accepts jobs."""
        request = Q.PauseQueueRequest(queue=queue)
        return QueueStats.from_proto(self._call(self._queue.PauseQueue, request).stats)

    def resume_queue(self, queue: str) -> QueueStats:
        """Resumes deliveries from a paused queue."""
        request = Q.ResumeQueueRequest(queue=queue)
        return QueueStats.from_proto(self._call(self._queue.ResumeQueue, request).stats)

    def get_queue_config(self, queue: str) -> QueueConfig:
        """Returns a queue's flow control (limits, rate, key policy); no limits if never set."""
        request = Q.GetQueueConfigRequest(queue=queue)
        return QueueConfig.from_proto(self._call(self._queue.GetQueueConfig, request).config)

    def update_queue_config(
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
        """Changes the settings given of a queue's flow control, on every gateway at once.

        Args:
            queue: The queue.
            max_concurrency_per_key: Most jobs of one concurrency key processing
                at once; 0 or None: no limit.
            max_concurrency: Most jobs of the queue processing at once; 0 or None: no limit.
            rate: Deliveries admitted per period, e.g. "100/minute", "5/second",
                "10/30s"; None removes the rate limit.
            burst: Deliveries `rate` admits at once after an idle spell (default 1).
            on_busy_key: What an enqueue does when its key is at its limit:
                "queue" (wait), "cancel_in_progress" (cancel the key's oldest
                jobs so the new one runs) or "cancel_newest" (cancel the new one).
            key_weights: Deliveries per round of fair dispatch of the keys named.
            fifo_across_keys: True turns fair dispatch off: the oldest ready job
                across keys goes first (the limits still hold).

        Returns:
            The queue's flow control as it is now.

        Raises:
            InvalidArgumentError: A value is out of range (the message names it).
            FlowControlUnsupportedError: The gateway's provider does not enforce
                flow control yet.
        """
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
        return QueueConfig.from_proto(self._call(self._queue.UpdateQueueConfig, request).config)

    def list_queue_configs(self) -> list[QueueConfig]:
        """Returns the flow control of every queue that has some, sorted by queue."""
        response = self._call(self._queue.ListQueueConfigs, Q.ListQueueConfigsRequest())
        return [QueueConfig.from_proto(config) for config in response.configs]

    def list_workers(self, queue: str | None = None) -> list[WorkerInfo]:
        """Returns the worker streams connected to every gateway (of `queue`, if given)."""
        request = W.ListWorkersRequest(queue=queue or "")
        response = self._call(self._workers.ListWorkers, request)
        return [WorkerInfo.from_proto(worker) for worker in response.workers]

    def drain_worker(self, worker_id: str, *, session_id: str | None = None) -> int:
        """Asks a worker to finish its jobs and disconnect; returns how many streams.

        Raises:
            WorkerNotFoundError: No gateway has a stream of this worker.
        """
        request = W.DrainWorkerRequest(worker_id=worker_id, session_id=session_id or "")
        return self._call(self._workers.DrainWorker, request).drained
