"""`AsyncClient`: the asyncio producer client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
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
from jobwire.client._errors import StatusCode
from jobwire.client._models import (
    Job,
    JobList,
    JobPage,
    JobRequest,
    JobState,
    QueueStats,
    QueueStatsList,
)
from jobwire.client._progress import MAX_STREAMS, JobsProgress, as_jobs, follow
from jobwire.client._schedules import MisfirePolicy, Schedule, ScheduleList
from jobwire.client._serializers import Serializer
from jobwire.v1 import queue_service_pb2, queue_service_pb2_grpc, schedule_service_pb2_grpc
from jobwire.v1 import schedule_service_pb2 as S

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub
    from jobwire.v1.schedule_service_pb2_grpc import ScheduleServiceAsyncStub

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)


class AsyncClient(BaseClient):
    """Asyncio client of a jobwire gateway; see `Client` for the arguments.

    Concurrent `enqueue` calls are coalesced: those made while the event loop runs
    one iteration go to the gateway together in one `EnqueueJobs` call, sent on the
    next iteration (never held back by a timer). Each caller still gets its own job
    or its own error.

    The channel is opened on first use and belongs to that event loop: use one
    client per loop.

    Example:
        ```python
        async with AsyncClient("127.0.0.1:50051") as client:
            jobs = await asyncio.gather(*(client.enqueue("resize", n) for n in range(100)))
            print(await jobs[0].wait(timeout=30))
        ```
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
        self._connection: _Connection | None = None

    @classmethod
    async def connect(cls, address: str | None = None, **options: Unpack[ClientOptions]) -> Self:
        """Creates a client and checks that the gateway answers its health check.

        Args:
            address: The gateway, host:port.
            **options: The keyword arguments of `Client`.

        Raises:
            GatewayUnavailableError: No gateway answered within a few seconds (at most
                `timeout`), or it is not serving. The message names the address.
        """
        client = cls(address, **options)
        try:
            health = health_pb2_grpc.HealthStub(client._connect().channel)
            try:
                response = await health.Check(
                    health_pb2.HealthCheckRequest(),
                    timeout=client._connect_timeout,
                    metadata=client._metadata,
                )
            except grpc.RpcError as error:
                raise client._connect_error(error) from error
            client._check_serving(response)
        except BaseException:
            await client.aclose()
            raise
        return client

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
        )
        proto = self._enqueue_request(request)
        return self._enqueued(proto, await self._connect().coalescer.submit(proto))

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

    async def register_recurring(
        self,
        name: str,
        type: str,
        payload: Any = None,
        *,
        schedule: str | timedelta,
        time_zone: str = "UTC",
        queue: str = "default",
        max_retries: int | None = None,
        timeout: float | timedelta | None = None,  # noqa: ASYNC109  # the job's, not the call's
        attributes: Mapping[str, str] | None = None,
        content_type: str | None = None,
        misfire_policy: MisfirePolicy | str = MisfirePolicy.SKIP,
        description: str = "",
    ) -> Schedule:
        """Creates or updates the recurring job `name`; see `Client.register_recurring`."""
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
        return self._schedule(
            (await self._call(self._connect().schedules.UpdateSchedule, request)).schedule
        )

    async def get_schedule(self, name: str) -> Schedule:
        """Returns the schedule `name`; see `Client.get_schedule`."""
        request = S.GetScheduleRequest(name=name)
        return self._schedule(
            (await self._call(self._connect().schedules.GetSchedule, request)).schedule
        )

    async def list_schedules(self) -> ScheduleList:
        """Returns every schedule, sorted by name; see `Client.list_schedules`."""
        schedules = ScheduleList()
        request = S.ListSchedulesRequest(page_size=1000)
        while True:
            response = await self._call(self._connect().schedules.ListSchedules, request)
            schedules.extend(map(self._schedule, response.schedules))
            if not response.next_page_token:
                return schedules
            request.page_token = response.next_page_token

    async def pause_schedule(self, name: str) -> Schedule:
        """Stops the schedule from firing until `resume_schedule`; see `Client.pause_schedule`."""
        request = S.PauseScheduleRequest(name=name)
        return self._schedule(
            (await self._call(self._connect().schedules.PauseSchedule, request)).schedule
        )

    async def resume_schedule(self, name: str) -> Schedule:
        """Resumes a paused schedule; see `Client.resume_schedule`."""
        request = S.ResumeScheduleRequest(name=name)
        return self._schedule(
            (await self._call(self._connect().schedules.ResumeSchedule, request)).schedule
        )

    async def delete_schedule(self, name: str, *, missing_ok: bool = False) -> None:
        """Deletes the schedule; see `Client.delete_schedule`."""
        request = S.DeleteScheduleRequest(name=name, allow_missing=missing_ok)
        await self._call(self._connect().schedules.DeleteSchedule, request)

    async def trigger_schedule(self, name: str) -> Job:
        """Enqueues the schedule's job now, outside its timetable; see `Client.trigger_schedule`."""
        request = S.TriggerScheduleRequest(name=name)
        return self._job((await self._call(self._connect().schedules.TriggerSchedule, request)).job)

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

        See `Client.watch`; here the `WatchJob` streams run on the caller's loop.
        """
        watched = as_jobs(jobs)
        stub = self._connect().queue
        with JobsProgress(watched, desc=desc) as progress:
            try:
                await follow(
                    stub,
                    [job.id for job in watched],
                    lambda index, proto: progress.update(index, self._job(proto)),
                    metadata=self._metadata,
                    max_streams=max_streams,
                    time_limit=self._wait_seconds(timeout),
                )
            except grpc.RpcError as error:
                raise self._error(error) from error
        return progress.jobs

    async def aclose(self) -> None:
        """Sends the enqueues still pending, waits for them, then closes the channel."""
        if self._closed:
            return
        self._closed = True
        if self._connection is not None:
            await self._connection.coalescer.aclose()
            await self._connection.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

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

    def _connect(self) -> _Connection:
        """Returns the connection of the running loop, opening it on first use."""
        self._ensure_open()
        loop = asyncio.get_running_loop()
        if self._connection is None:
            self._connection = _Connection(self, self._aio_channel(), loop)
        elif self._connection.loop is not loop:
            raise RuntimeError(
                "this AsyncClient is bound to the event loop it was first used on; "
                "create one client per event loop"
            )
        return self._connection

    async def _call(
        self, method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response], request: _Request
    ) -> _Response:
        try:
            return await method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as error:
            raise self._error(error) from error


class _Connection:
    """The channel of an `AsyncClient` and what lives on its event loop."""

    def __init__(
        self, client: AsyncClient, channel: grpc.aio.Channel, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.channel = channel
        self.loop = loop
        self.queue: QueueServiceAsyncStub = queue_service_pb2_grpc.QueueServiceStub(channel)
        self.schedules: ScheduleServiceAsyncStub = schedule_service_pb2_grpc.ScheduleServiceStub(
            channel
        )
        self.coalescer = _EnqueueCoalescer(client, self.queue, loop)


_Pending = tuple[
    queue_service_pb2.EnqueueJobRequest, asyncio.Future[queue_service_pb2.EnqueueJobResponse]
]


class _EnqueueCoalescer:
    """Sends the enqueues submitted during one loop iteration in one `EnqueueJobs` call."""

    def __init__(
        self, client: AsyncClient, stub: QueueServiceAsyncStub, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._client = client
        self._stub = stub
        self._loop = loop
        self._pending: list[_Pending] = []
        self._sends: set[asyncio.Task[None]] = set()

    def submit(
        self, request: queue_service_pb2.EnqueueJobRequest
    ) -> asyncio.Future[queue_service_pb2.EnqueueJobResponse]:
        """Queues `request` for the next flush; the future resolves to its response."""
        future: asyncio.Future[queue_service_pb2.EnqueueJobResponse] = self._loop.create_future()
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append((request, future))
        return future

    def flush(self) -> None:
        """Starts sending everything submitted so far."""
        # A caller cancelled before its request left gets no job enqueued.
        pending = [item for item in self._pending if not item[1].cancelled()]
        self._pending = []
        for batch in batches(pending, lambda item: item[0].ByteSize()):
            send = self._loop.create_task(self._send(batch))
            self._sends.add(send)
            send.add_done_callback(self._sends.discard)

    async def aclose(self) -> None:
        """Sends what is pending and waits for every send to finish."""
        self.flush()
        await asyncio.gather(*self._sends)

    async def _send(self, batch: list[_Pending]) -> None:
        try:
            responses = await self._enqueue([request for request, _ in batch])
        except grpc.RpcError as error:
            if len(batch) > 1 and self._client._error(error).code is StatusCode.INVALID_ARGUMENT:
                # The gateway rejects a batch as a whole; sent alone, each request
                # gets its own outcome and one bad caller does not fail the others.
                await asyncio.gather(*(self._send([item]) for item in batch))
                return
            for _, future in batch:
                mapped = self._client._error(error)
                mapped.__cause__ = error
                _set_exception(future, mapped)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:
            for _, future in batch:
                _set_exception(future, error)
        else:
            for (_, future), response in zip(batch, responses, strict=True):
                if not future.done():
                    future.set_result(response)

    async def _enqueue(
        self, requests: list[queue_service_pb2.EnqueueJobRequest]
    ) -> Sequence[queue_service_pb2.EnqueueJobResponse]:
        client = self._client
        if len(requests) == 1:
            return [
                await self._stub.EnqueueJob(
                    requests[0], timeout=client._timeout, metadata=client._metadata
                )
            ]
        response = await self._stub.EnqueueJobs(
            queue_service_pb2.EnqueueJobsRequest(requests=requests),
            timeout=client._timeout,
            metadata=client._metadata,
        )
        return client._enqueue_results(len(requests), response)


def _set_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    # A caller that was cancelled no longer awaits its future.
    if not future.done():
        future.set_exception(error)
