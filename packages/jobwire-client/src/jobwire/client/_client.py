"""`Client`: the blocking producer client."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from itertools import islice
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, Unpack

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from jobwire.client._base import BaseClient, batches, states_of
from jobwire.client._config import (
    DEFAULT_RETRY,
    DEFAULT_TIMEOUT,
    ClientOptions,
    RetryConfig,
    TLSConfig,
)
from jobwire.client._models import (
    Job,
    JobList,
    JobPage,
    JobRequest,
    JobState,
    QueueStats,
    QueueStatsList,
)
from jobwire.client._progress import MAX_STREAMS, JobsProgress, StreamThread, as_jobs, follow
from jobwire.client._schedules import MisfirePolicy, Schedule, ScheduleList
from jobwire.client._serializers import Serializer
from jobwire.v1 import (
    job_pb2,
    queue_service_pb2,
    queue_service_pb2_grpc,
    schedule_service_pb2_grpc,
)
from jobwire.v1 import schedule_service_pb2 as S

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)


class Client(BaseClient):
    """Blocking client of a jobwire gateway.

    It uses a plain blocking gRPC channel and no event loop, so it works the same in
    scripts, threads and Jupyter notebooks (even inside a running loop).

    Example:
        ```python
        with Client("127.0.0.1:50051") as client:
            job = client.enqueue("email:send", {"to": "ada@example.com"})
            print(job.wait(timeout=30))
        ```

    Args:
        address: The gateway, host:port; defaults to `$JOBWIRE_GATEWAY`, else
            127.0.0.1:50051.
        timeout: Deadline of each call, in seconds or as a timedelta (streams and
            `wait` have their own).
        token: Bearer token sent with every call; defaults to `$JOBWIRE_TOKEN`.
        serializer: Encodes payloads that are not bytes and decodes payloads and
            results; defaults to `JsonSerializer()`.
        tls: TLS settings; None connects without TLS.
        retry: How gRPC retries calls the gateway could not take (UNAVAILABLE).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        token: str | None = None,
        serializer: Serializer | None = None,
        tls: TLSConfig | None = None,
        retry: RetryConfig = DEFAULT_RETRY,
    ) -> None:
        super().__init__(
            address, timeout=timeout, token=token, serializer=serializer, tls=tls, retry=retry
        )
        if tls is None:
            self._channel = grpc.insecure_channel(self._address, self._channel_options)
        else:
            self._channel = grpc.secure_channel(
                self._address, tls.credentials(), self._channel_options
            )
        self._queue = queue_service_pb2_grpc.QueueServiceStub(self._channel)
        self._schedules = schedule_service_pb2_grpc.ScheduleServiceStub(self._channel)

    @classmethod
    def connect(cls, address: str | None = None, **options: Unpack[ClientOptions]) -> Self:
        """Creates a client and checks that the gateway answers its health check.

        Args:
            address: The gateway, host:port; defaults to `$JOBWIRE_GATEWAY`, else
            127.0.0.1:50051.
            **options: The keyword arguments of `Client`.

        Raises:
            GatewayUnavailableError: No gateway answered within a few seconds (at most
                `timeout`), or it is not serving. The message names the address.
        """
        client = cls(address, **options)
        try:
            health = health_pb2_grpc.HealthStub(client._channel)
            try:
                response = health.Check(
                    health_pb2.HealthCheckRequest(),
                    timeout=client._connect_timeout,
                    metadata=client._metadata,
                )
            except grpc.RpcError as error:
                raise client._connect_error(error) from error
            client._check_serving(response)
        except BaseException:
            client.close()
            raise
        return client

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
        )
        proto = self._enqueue_request(request)
        return self._enqueued(proto, self._call(self._queue.EnqueueJob, proto))

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

    def register_recurring(
        self,
        name: str,
        type: str,
        payload: Any = None,
        *,
        schedule: str | timedelta,
        time_zone: str = "UTC",
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,
        attributes: Mapping[str, str] | None = None,
        content_type: str | None = None,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.SKIP,
        description: str = "",
    ) -> Schedule:
        """Creates the recurring job `name`, or updates it if it exists.

        Safe to call at every deploy: a schedule an operator paused stays paused.

        Args:
            name: Unique name of the schedule, e.g. "daily-report".
            type: Type of the job each occurrence enqueues.
            payload: Payload of each job, encoded like `enqueue`'s.
            schedule: A five-field cron expression ("0 9 * * *"), an interval in
                words ("every 30 minutes", "1h30m") or a timedelta.
            time_zone: IANA time zone the cron expression is read in.
            queue: Queue of the jobs.
            max_retries: Retries per job; None means the gateway's default.
            timeout: Longest one attempt may run.
            attributes: Metadata copied onto each job.
            content_type: Media type of the payload, overriding the default.
            misfire_policy: What to do with occurrences missed while no gateway ran.
            description: Free text for operators.

        Raises:
            InvalidArgumentError: Invalid cron, time zone or interval; the error
                names the field.
        """
        request = self._register_request(
            name,
            type,
            payload,
            schedule=schedule,
            time_zone=time_zone,
            queue=queue,
            max_retries=max_retries,
            timeout=timeout,
            attributes=attributes,
            content_type=content_type,
            misfire_policy=misfire_policy,
            description=description,
        )
        return self._schedule(self._call(self._schedules.UpdateSchedule, request).schedule)

    def get_schedule(self, name: str) -> Schedule:
        """Returns the schedule `name`.

        Raises:
            ScheduleNotFoundError: No schedule has this name.
        """
        request = S.GetScheduleRequest(name=name)
        return self._schedule(self._call(self._schedules.GetSchedule, request).schedule)

    def list_schedules(self) -> ScheduleList:
        """Returns every schedule, sorted by name, as a list that displays as a table."""
        schedules = ScheduleList()
        request = S.ListSchedulesRequest(page_size=1000)
        while True:
            response = self._call(self._schedules.ListSchedules, request)
            schedules.extend(map(self._schedule, response.schedules))
            if not response.next_page_token:
                return schedules
            request.page_token = response.next_page_token

    def pause_schedule(self, name: str) -> Schedule:
        """Stops the schedule from firing until `resume_schedule`."""
        request = S.PauseScheduleRequest(name=name)
        return self._schedule(self._call(self._schedules.PauseSchedule, request).schedule)

    def resume_schedule(self, name: str) -> Schedule:
        """Resumes a paused schedule from its next occurrence after now."""
        request = S.ResumeScheduleRequest(name=name)
        return self._schedule(self._call(self._schedules.ResumeSchedule, request).schedule)

    def delete_schedule(self, name: str, *, missing_ok: bool = False) -> None:
        """Deletes the schedule; jobs it already enqueued are not affected.

        Raises:
            ScheduleNotFoundError: No schedule has this name and `missing_ok` is false.
        """
        request = S.DeleteScheduleRequest(name=name, allow_missing=missing_ok)
        self._call(self._schedules.DeleteSchedule, request)

    def trigger_schedule(self, name: str) -> Job:
        """Enqueues the schedule's job now, outside its timetable."""
        request = S.TriggerScheduleRequest(name=name)
        return self._job(self._call(self._schedules.TriggerSchedule, request).job)

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
        (`tqdm.auto`). The gateway pushes every change over `WatchJob` streams,
        no polling: at most `max_streams` are open at once, all on one background
        thread, whatever the number of jobs.

        Like `concurrent.futures.wait`, a timeout is not an error: the jobs come
        back as last seen, so check `state` (dead jobs do not raise either; `wait`
        and `job.wait()` do).

        Args:
            jobs: The jobs to follow, e.g. what `enqueue_many` returned, or one job.
            timeout: Longest to follow them; None follows until all have finished.
            desc: Label in front of the bar.
            max_streams: Most `WatchJob` streams open at once.

        Returns:
            The jobs as last seen (without payload and result), in the order given.

        Raises:
            JobNotFoundError: A job does not exist (any more).
        """
        self._ensure_open()
        watched = as_jobs(jobs)
        ids = [job.id for job in watched]
        seconds = self._wait_seconds(timeout)

        async def stream(emit: Callable[[tuple[int, job_pb2.Job]], None]) -> None:
            # The channel belongs to the StreamThread's private loop: opened on it.
            async with self._aio_channel() as channel:
                stub: QueueServiceAsyncStub = queue_service_pb2_grpc.QueueServiceStub(channel)
                await follow(
                    stub,
                    ids,
                    lambda index, job: emit((index, job)),
                    metadata=self._metadata,
                    max_streams=max_streams,
                    time_limit=seconds,
                )

        with JobsProgress(watched, desc=desc) as progress, StreamThread(stream) as updates:
            try:
                for index, proto in updates:
                    progress.update(index, self._job(proto))
            except grpc.RpcError as error:
                raise self._error(error) from error
        return progress.jobs

    def close(self) -> None:
        """Closes the channel; calls in flight fail."""
        self._closed = True
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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

    def _call(
        self, method: grpc.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        self._ensure_open()
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from error
