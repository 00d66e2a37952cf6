"""`Client`'s watching and waiting: one job's changes, or many jobs' over few streams."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import grpc

from jobwire.client._job_lists import JobList
from jobwire.client._models import Job, JobState
from jobwire.client._operations import job_selector, watch_jobs_request
from jobwire.client._progress import (
    MAX_STREAMS,
    JobsProgress,
    StreamThread,
    Update,
    as_jobs,
    follow,
)
from jobwire.client._sync_jobs import SyncJobs
from jobwire.v1 import job_pb2, queue_service_pb2_grpc

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub


class SyncWatch(SyncJobs):
    """The watching methods of `Client`, built on its job reads."""

    def watch_job(self, job_or_id: Job | str) -> Iterator[Job]:
        """Yields the job's current state, then every change, until it finishes.

        The jobs carry no payload or result; `get_job` returns them.

        Raises:
            JobNotFoundError: No job has this id.
        """
        self._ensure_open()
        call = self._queue.WatchJob(self._watch_request(job_or_id), metadata=self._metadata)
        try:
            for response in call:
                yield self._job(response.job)
        except grpc.RpcError as error:
            raise self._error(error) from error
        finally:
            call.cancel()

    def watch_jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        attributes: Mapping[str, str] | None = None,
        ids: Iterable[Job | str] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        only_new: bool = False,
        full: bool = False,
    ) -> Iterator[Job]:
        """Yields every change of every job matching the filters, until you stop.

        First the jobs that match now, each as it is (unless `only_new`), then
        each change of a matching job, those enqueued later included (through
        any gateway of the backend). The gateway pushes them over one
        `WatchJobs` stream, batched per frame, no polling. Each job's end
        (completed, dead, cancelled) comes exactly once, also for jobs that
        ended before the watch began; states in between may be skipped when
        they follow each other faster than the frames (the latest wins).

        The stream opens at the first `next()` and closes when the loop
        ends (`break`) or the generator is closed.

        Args:
            queue: Only jobs of this queue.
            type: Only jobs of this type.
            attributes: Only jobs carrying each of these attributes with this
                value, e.g. `{"batch": batch_id}` set on every job of a batch.
            ids: Only these jobs (full ids or `Job`s, at most 1000).
            created_after: Only jobs created at or after this aware time.
            created_before: Only jobs created before this aware time.
            only_new: Skip the jobs that exist when the watch begins.
            full: Include payloads and results.

        Raises:
            InvalidArgumentError: A bad filter, or more than 100,000 existing
                jobs match (narrow it, e.g. `created_after`, or set `only_new`).
        """
        self._ensure_open()
        selector = job_selector(
            queue=queue,
            type=type,
            states=None,
            error_contains=None,
            created_after=created_after,
            created_before=created_before,
            ids=ids,
            attributes=attributes,
        )
        request = watch_jobs_request(selector, only_new=only_new, full=full)
        call = self._queue.WatchJobs(request, metadata=self._metadata)
        try:
            for response in call:
                for proto in response.jobs:
                    yield self._job(proto)
        except grpc.RpcError as error:
            raise self._error(error) from error
        finally:
            call.cancel()

    def wait(self, job_or_id: Job | str, *, timeout: float | timedelta | None = None) -> Any:
        """Waits until the job finishes and returns its decoded result.

        Follows the job with `WatchJob`, so it learns of the end at once (no polling).

        Args:
            job_or_id: The job or its id.
            timeout: Longest to wait; None waits as long as it takes.

        Returns:
            The job's result, decoded like its payload.

        Raises:
            JobDeadError: The job failed for good; `.last_error` says why.
            JobCancelledError: The job was cancelled.
            WaitTimeoutError: `timeout` passed first (a `TimeoutError`).
            JobNotFoundError: No job has this id.
        """
        job = self._watch_until_terminal(job_or_id, timeout)
        if job.state is JobState.COMPLETED:
            job = self.get_job(job.id)
        return self._outcome(job)

    def watch(
        self,
        jobs: Job | Iterable[Job],
        *,
        timeout: float | timedelta | None = None,
        desc: str = "jobs",
        max_streams: int = MAX_STREAMS,
    ) -> JobList:
        """Shows a live progress bar of the jobs until every one has finished.

        The bar counts finished jobs and moves with the progress handlers report
        (`ctx.progress(...)`); after it come the counts by state and the latest
        handler message. It is a widget in Jupyter and text on stderr elsewhere
        (`tqdm.auto`). The gateway pushes the changes over one `WatchJobs` stream
        per 10,000 jobs, batched per frame, no polling: at most `max_streams`
        are open at once, all on one background thread.

        Like `concurrent.futures.wait`, a timeout is not an error: the jobs come
        back as last seen, so check `state` (dead jobs do not raise either; `wait`
        and `job.wait()` do).

        Args:
            jobs: The jobs to follow, e.g. what `enqueue_many` returned, or one job.
            timeout: Longest to follow them; None follows until all have finished.
            desc: Label in front of the bar.
            max_streams: Most `WatchJobs` streams open at once.

        Returns:
            The jobs as last seen (without payload and result), in the order given.

        Raises:
            JobNotFoundError: A job does not exist (any more).
        """
        self._ensure_open()
        watched = as_jobs(jobs)
        ids = [job.id for job in watched]
        seconds = self._wait_seconds(timeout)

        with JobsProgress(watched, desc=desc, convert=self._job) as progress:
            for frame in self._follow(ids, seconds, max_streams, job_pb2.JOB_VIEW_BASIC):
                progress.update_frame(frame)
        return progress.jobs

    def wait_all(
        self, jobs: Iterable[Job | str], *, timeout: float | timedelta | None = None
    ) -> list[Any]:
        """Waits until every job finishes; returns their results in the order given.

        Follows them all over `WatchJobs` (one stream per 10,000 jobs, results
        included), so waiting on many jobs costs a few frames, not a call each.

        Raises:
            JobDeadError: A job died (the first such in the order given).
            JobCancelledError: A job was cancelled.
            WaitTimeoutError: `timeout` passed before every job finished.
            JobNotFoundError: A job does not exist (any more).
        """
        self._ensure_open()
        ids = [job.id if isinstance(job, Job) else job for job in jobs]
        last: list[job_pb2.Job | None] = [None] * len(ids)
        seconds = self._wait_seconds(timeout)

        for frame in self._follow(ids, seconds, MAX_STREAMS, job_pb2.JOB_VIEW_FULL):
            for index, proto in frame:
                last[index] = proto
        return self._outcomes(ids, last, timeout)

    def _follow(
        self,
        ids: list[str],
        seconds: float | None,
        max_streams: int,
        view: job_pb2.JobView.ValueType,
    ) -> Iterator[list[Update]]:
        """Each frame's `(index, job)` updates, over `WatchJobs` on a thread."""

        async def stream(emit: Callable[[list[Update]], None]) -> None:
            # The channel belongs to the StreamThread's private loop: opened on it.
            async with self._aio_channel() as channel:
                stub: QueueServiceAsyncStub = queue_service_pb2_grpc.QueueServiceStub(channel)
                await follow(
                    stub,
                    ids,
                    emit,
                    metadata=self._metadata,
                    max_streams=max_streams,
                    time_limit=seconds,
                    view=view,
                )

        with StreamThread(stream) as updates:
            try:
                yield from updates
            except grpc.RpcError as error:
                raise self._error(error) from error

    def _watch_until_terminal(self, job_or_id: Job | str, timeout: float | timedelta | None) -> Job:
        self._ensure_open()
        call = self._queue.WatchJob(
            self._watch_request(job_or_id),
            timeout=self._wait_seconds(timeout),
            metadata=self._metadata,
        )
        try:
            for response in call:
                job = self._job(response.job)
                if job.state.is_terminal:
                    return job
        except grpc.RpcError as error:
            raise self._wait_error(error, job_or_id, timeout) from error
        finally:
            call.cancel()
        raise self._watch_ended(job_or_id)
