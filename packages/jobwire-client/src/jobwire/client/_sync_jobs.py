"""`Client`'s jobs: enqueue, look up, list, cancel and count (watching: `_sync_watch`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from jobwire.client._base import batches, states_of
from jobwire.client._job_lists import JobList, JobPage
from jobwire.client._models import Job, JobState
from jobwire.client._pipeline import Pipeline
from jobwire.client._pipeline_base import DEFAULT_MAX_PENDING
from jobwire.client._queue_stats import QueueStats, QueueStatsList
from jobwire.client._requests import JobRequest
from jobwire.client._sync_calls import SyncCalls
from jobwire.v1 import queue_service_pb2

if TYPE_CHECKING:
    pass


class SyncJobs(SyncCalls):
    """The job methods of `Client`."""

    def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        deduplication_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
        content_type: str | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> Job:
        """Enqueues a job.

        Args:
            type: What the job does, e.g. "email:send"; routes it to a handler.
            payload: Handed to the handler. Bytes are sent as they are (labelled
                "application/octet-stream"); anything else is encoded by the serializer.
            queue: Queue to put the job in.
            delay: Run no sooner than this long from now (seconds or timedelta).
            at: Run no sooner than this timezone-aware time.
            max_retries: Retries after the first failed attempt; None means the
                gateway's default (3).
            timeout: Longest one attempt may run; None means the gateway's default.
            deduplication_key: While a job with this key is not finished, enqueueing
                another with the same key returns the existing job.
            attributes: Free-form string metadata copied onto the job.
            content_type: Media type of the payload, overriding the default.
            priority: 0 to 9, higher runs first; None means 5. Providers without
                priorities (SQS) refuse other values with `PriorityUnsupportedError`.
            concurrency_key: Groups the job for flow control, e.g. a customer id
                (at most 256 bytes): the queue's `max_concurrency_per_key` counts
                the jobs of one key, and deliveries rotate across keys. Providers
                without flow control raise `FlowControlUnsupportedError`.

        Returns:
            The job as stored.

        Raises:
            InvalidArgumentError: The job is invalid, e.g. `at` is naive.
            PayloadTooLargeError: The payload is larger than the gateway accepts.
            JobwireError: Any other failure.
        """
        request = JobRequest(
            type,
            payload,
            queue=queue,
            delay=delay,
            at=at,
            max_retries=max_retries,
            timeout=timeout,
            deduplication_key=deduplication_key,
            attributes=attributes,
            content_type=content_type,
            priority=priority,
            concurrency_key=concurrency_key,
        )
        proto = self._enqueue_request(request)
        self._ensure_open()
        # Over the client's enqueue stream; calls made meanwhile by other threads
        # share the next frame with this one.
        return self._enqueued(proto, self._enqueuer.enqueue(proto))

    def pipeline(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> Pipeline:
        """Opens a pipelined producer: `enqueue` returns a `PendingJob` at once.

        For one thread enqueueing many jobs one call at a time: the jobs leave in
        `EnqueueJobs` calls made by a sender thread, without a round trip per
        job. Errors are never silent: a refused job fails its own handle
        (`result()` raises), and `flush()` and `close()` raise
        `EnqueueFailedError` with every failure since the previous report, once.

        Args:
            max_pending: Most jobs enqueued and not yet answered; `enqueue`
                blocks while that many are.

        Example:
            with client.pipeline() as pipe:  # close() flushes
                handles = [pipe.enqueue("email:send", {"to": to}) for to in addresses]
            jobs = [handle.result() for handle in handles]
        """
        self._ensure_open()
        return Pipeline(self, self._queue, max_pending=max_pending)

    def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[Job]:
        """Enqueues several jobs with as few calls as possible.

        Each call carries up to 1000 jobs and is accepted or rejected as a whole;
        when a call fails, the jobs of earlier calls stay enqueued.

        Args:
            jobs: The jobs to enqueue.

        Returns:
            The stored jobs, in the order of `jobs`.
        """
        requests = [self._enqueue_request(job) for job in jobs]
        stored: list[Job] = []
        for batch in batches(requests, queue_service_pb2.EnqueueJobRequest.ByteSize):
            response = self._call(
                self._queue.EnqueueJobs, queue_service_pb2.EnqueueJobsRequest(requests=batch)
            )
            results = self._enqueue_results(len(batch), response)
            stored.extend(map(self._enqueued, batch, results))
        return stored

    def get_job(self, id: str) -> Job:
        """Returns the job with this id, payload and result included.

        Raises:
            JobNotFoundError: No job has this id.
        """
        return self._job(self._call(self._queue.GetJob, self._get_request(id)).job)

    def list_jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        state: JobState | Iterable[JobState] | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> JobPage:
        """Returns one page of jobs, newest first, without payloads and results.

        Args:
            queue: Only jobs in this queue; None means all queues.
            type: Only jobs of this type; None means all types.
            state: Only jobs in this state or these states; None means any state.
            page_size: Most jobs to return, 1 to 1000.
            page_token: `next_page_token` of the previous page.
        """
        request = self._list_request(
            queue=queue, type=type, state=state, page_size=page_size, page_token=page_token
        )
        return self._page(self._call(self._queue.ListJobs, request))

    def iter_jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        state: JobState | Iterable[JobState] | None = None,
        page_size: int = 100,
    ) -> Iterator[Job]:
        """Yields every matching job, newest first, fetching pages as needed.

        Takes the filters of `list_jobs`.
        """
        states = states_of(state)  # a generator would be spent by the first page
        page_token: str | None = None
        while True:
            page = self.list_jobs(
                queue=queue, type=type, state=states, page_size=page_size, page_token=page_token
            )
            yield from page
            if page.next_page_token is None:
                return
            page_token = page.next_page_token

    def jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        state: JobState | Iterable[JobState] | None = None,
        limit: int | None = 1000,
    ) -> JobList:
        """Returns the matching jobs, newest first, fetching as many pages as needed.

        The result displays as a table in notebooks and has `to_pandas()`.

        Args:
            queue: Only jobs in this queue; None means all queues.
            type: Only jobs of this type; None means all types.
            state: Only jobs in this state or these states; None means any state.
            limit: Most jobs to return; None returns every match.
        """
        page_size = 1000 if limit is None else max(1, min(limit, 1000))
        found = self.iter_jobs(queue=queue, type=type, state=state, page_size=page_size)
        return JobList(tuple(islice(found, limit)))

    def cancel_job(self, id: str, *, reason: str = "") -> Job:
        """Cancels a job; one being processed has its worker's lease revoked.

        Args:
            id: The job's id.
            reason: Why, recorded in the job's `last_error`.

        Returns:
            The cancelled job.

        Raises:
            JobNotFoundError: No job has this id.
            JobTerminalError: The job already finished.
        """
        request = queue_service_pb2.CancelJobRequest(id=id, reason=reason)
        return self._job(self._call(self._queue.CancelJob, request).job)

    def stats(self, queue: str | None = None) -> QueueStatsList:
        """Returns job counts per queue, sorted by queue name.

        The result is a list that displays as a table in notebooks.

        Args:
            queue: Only this queue; None means every queue the gateway knows.
        """
        request = queue_service_pb2.GetQueueStatsRequest(queue=queue or "")
        response = self._call(self._queue.GetQueueStats, request)
        return QueueStatsList(QueueStats.from_proto(stats) for stats in response.queues)

    def schedule(
        self,
        type: str,
        payload: Any = None,
        *,
        at: datetime,
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        deduplication_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Job:
        """Enqueues a job to run once, no sooner than `at` (timezone-aware).

        The gateway keeps jobs due further ahead than its queue can delay in its
        scheduler database, so they survive a restart. Takes the options of `enqueue`.
        """
        return self.enqueue(
            type,
            payload,
            at=at,
            queue=queue,
            max_retries=max_retries,
            timeout=timeout,
            deduplication_key=deduplication_key,
            attributes=attributes,
        )
