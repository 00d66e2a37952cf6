"""`AsyncClient`'s jobs: enqueue, look up, list, cancel, count, watch and wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import grpc

from jobwire.client._async_calls import AsyncCalls
from jobwire.client._async_pipeline import AsyncPipeline
from jobwire.client._base import batches, states_of
from jobwire.client._job_lists import JobList, JobPage
from jobwire.client._models import Job, JobState
from jobwire.client._operations import job_selector, watch_jobs_request
from jobwire.client._pipeline_base import DEFAULT_MAX_PENDING
from jobwire.client._progress import MAX_STREAMS, JobsProgress, Update, as_jobs, follow
from jobwire.client._queue_stats import QueueStats, QueueStatsList
from jobwire.client._requests import JobRequest
from jobwire.v1 import job_pb2, queue_service_pb2


class AsyncJobs(AsyncCalls):
    """The job methods of `AsyncClient`."""

    async def enqueue(
        self,
        type: str,
        payload: Any = None,
        *,
        queue: str = "default",
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109  # the job's, not the call's
        deduplication_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
        content_type: str | None = None,
        priority: int | None = None,
        concurrency_key: str | None = None,
    ) -> Job:
        """Enqueues a job; see `Client.enqueue`. Concurrent calls are coalesced."""
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
        connection = self._connect()
        answer: asyncio.Future[queue_service_pb2.EnqueueJobResponse] = (
            connection.loop.create_future()
        )
        connection.enqueuer.submit(proto, answer)
        return self._enqueued(proto, await answer)

    def pipeline(self, *, max_pending: int = DEFAULT_MAX_PENDING) -> AsyncPipeline:
        """Opens a pipelined producer; see `Client.pipeline`. Call it on the client's loop.

        `enqueue` is a plain call returning an `AsyncPendingJob` at once (await it
        for the `Job`, or its error). Where the blocking pipeline's `enqueue`
        waits for room, this one raises `PipelineFullError` once `max_pending`
        jobs are unanswered: `await pipe.wait_for_room()` before enqueueing when
        the producer may outrun the gateway.

        Example:
            async with client.pipeline() as pipe:  # aclose() flushes
                handles = [pipe.enqueue("email:send", {"to": to}) for to in addresses]
            jobs = [await handle for handle in handles]
        """
        connection = self._connect()
        return AsyncPipeline(self, connection.queue, connection.loop, max_pending=max_pending)

    async def enqueue_many(self, jobs: Iterable[JobRequest]) -> list[Job]:
        """Enqueues several jobs with as few calls as possible; see `Client.enqueue_many`."""
        stub = self._connect().queue
        requests = [self._enqueue_request(job) for job in jobs]
        stored: list[Job] = []
        for batch in batches(requests, queue_service_pb2.EnqueueJobRequest.ByteSize):
            response = await self._call(
                stub.EnqueueJobs, queue_service_pb2.EnqueueJobsRequest(requests=batch)
            )
            results = self._enqueue_results(len(batch), response)
            stored.extend(map(self._enqueued, batch, results))
        return stored

    async def get_job(self, id: str) -> Job:
        """Returns the job with this id; see `Client.get_job`."""
        response = await self._call(self._connect().queue.GetJob, self._get_request(id))
        return self._job(response.job)

    async def list_jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        state: JobState | Iterable[JobState] | None = None,
        page_size: int = 100,
        page_token: str | None = None,
    ) -> JobPage:
        """Returns one page of jobs; see `Client.list_jobs`."""
        request = self._list_request(
            queue=queue, type=type, state=state, page_size=page_size, page_token=page_token
        )
        return self._page(await self._call(self._connect().queue.ListJobs, request))

    async def iter_jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        state: JobState | Iterable[JobState] | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Job]:
        """Yields every matching job; see `Client.iter_jobs`."""
        states = states_of(state)  # a generator would be spent by the first page
        page_token: str | None = None
        while True:
            page = await self.list_jobs(
                queue=queue, type=type, state=states, page_size=page_size, page_token=page_token
            )
            for job in page:
                yield job
            if page.next_page_token is None:
                return
            page_token = page.next_page_token

    async def jobs(
        self,
        *,
        queue: str | None = None,
        type: str | None = None,
        state: JobState | Iterable[JobState] | None = None,
        limit: int | None = 1000,
    ) -> JobList:
        """Returns the matching jobs, newest first, across pages; see `Client.jobs`."""
        page_size = 1000 if limit is None else max(1, min(limit, 1000))
        found: list[Job] = []
        async for job in self.iter_jobs(queue=queue, type=type, state=state, page_size=page_size):
            if limit is not None and len(found) >= limit:
                break
            found.append(job)
        return JobList(tuple(found))

    async def cancel_job(self, id: str, *, reason: str = "") -> Job:
        """Cancels a job; see `Client.cancel_job`."""
        request = queue_service_pb2.CancelJobRequest(id=id, reason=reason)
        return self._job((await self._call(self._connect().queue.CancelJob, request)).job)

    async def stats(self, queue: str | None = None) -> QueueStatsList:
        """Returns job counts per queue; see `Client.stats`."""
        request = queue_service_pb2.GetQueueStatsRequest(queue=queue or "")
        response = await self._call(self._connect().queue.GetQueueStats, request)
        return QueueStatsList(QueueStats.from_proto(stats) for stats in response.queues)

    async def schedule(
        self,
        type: str,
        payload: Any = None,
        *,
        at: datetime,
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109  # the job's, not the call's
        deduplication_key: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> Job:
        """Enqueues a job to run once at `at`; see `Client.schedule`."""
        return await self.enqueue(
            type,
            payload,
            at=at,
            queue=queue,
            max_retries=max_retries,
            timeout=timeout,
            deduplication_key=deduplication_key,
            attributes=attributes,
        )

    async def watch_job(self, job_or_id: Job | str) -> AsyncIterator[Job]:
        """Yields the job's state and every change until it finishes; see `Client.watch_job`.

        Leaving the loop early ends the watch when the generator is closed; wrap it in
        `contextlib.aclosing` to close it at once.
        """
        call = self._connect().queue.WatchJob(
            self._watch_request(job_or_id), metadata=self._metadata
        )
        try:
            async for response in call:
                yield self._job(response.job)
        except grpc.RpcError as error:
            raise self._error(error) from error
        finally:
            call.cancel()

    async def watch_jobs(
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
    ) -> AsyncGenerator[Job, None]:
        """Yields every change of every matching job until you stop; see `Client.watch_jobs`.

        Wrap it in `contextlib.aclosing` to end the stream as soon as the loop does.
        """
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
        call = self._connect().queue.WatchJobs(request, metadata=self._metadata)
        try:
            async for response in call:
                for proto in response.jobs:
                    yield self._job(proto)
        except grpc.RpcError as error:
            raise self._error(error) from error
        finally:
            call.cancel()

    async def wait(
        self,
        job_or_id: Job | str,
        *,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109  # a gRPC deadline, as in Client.wait
    ) -> Any:
        """Waits until the job finishes and returns its result; see `Client.wait`."""
        job = await self._watch_until_terminal(job_or_id, timeout)
        if job.state is JobState.COMPLETED:
            job = await self.get_job(job.id)
        return self._outcome(job)

    async def watch(
        self,
        jobs: Job | Iterable[Job],
        *,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109  # returns, as Client.watch
        desc: str = "jobs",
        max_streams: int = MAX_STREAMS,
    ) -> JobList:
        """Shows a live progress bar of the jobs until every one has finished.

        See `Client.watch`; here the `WatchJobs` streams run on the caller's loop.
        """
        watched = as_jobs(jobs)
        stub = self._connect().queue
        with JobsProgress(watched, desc=desc, convert=self._job) as progress:
            try:
                await follow(
                    stub,
                    [job.id for job in watched],
                    progress.update_frame,
                    metadata=self._metadata,
                    max_streams=max_streams,
                    time_limit=self._wait_seconds(timeout),
                )
            except grpc.RpcError as error:
                raise self._error(error) from error
        return progress.jobs

    async def wait_all(
        self,
        jobs: Iterable[Job | str],
        *,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109  # as Client.wait_all
    ) -> list[Any]:
        """Waits until every job finishes; returns their results; see `Client.wait_all`."""
        ids = [job.id if isinstance(job, Job) else job for job in jobs]
        last: list[job_pb2.Job | None] = [None] * len(ids)

        def record(frame: list[Update]) -> None:
            for index, proto in frame:
                last[index] = proto

        try:
            await follow(
                self._connect().queue,
                ids,
                record,
                metadata=self._metadata,
                max_streams=MAX_STREAMS,
                time_limit=self._wait_seconds(timeout),
                view=job_pb2.JOB_VIEW_FULL,
            )
        except grpc.RpcError as error:
            raise self._error(error) from error
        return self._outcomes(ids, last, timeout)

    async def _watch_until_terminal(
        self,
        job_or_id: Job | str,
        timeout: float | timedelta | None,  # noqa: ASYNC109  # a gRPC deadline
    ) -> Job:
        call = self._connect().queue.WatchJob(
            self._watch_request(job_or_id),
            timeout=self._wait_seconds(timeout),
            metadata=self._metadata,
        )
        try:
            async for response in call:
                job = self._job(response.job)
                if job.state.is_terminal:
                    return job
        except grpc.RpcError as error:
            raise self._wait_error(error, job_or_id, timeout) from error
        finally:
            call.cancel()
        raise self._watch_ended(job_or_id)
