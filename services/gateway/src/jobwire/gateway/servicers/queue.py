"""``jobwire.v1.QueueService``: the producer API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from jobwire.gateway._errors import InvalidArgumentError
from jobwire.gateway._models import JobRecord, duration
from jobwire.gateway._service import JobService
from jobwire.gateway.providers import QueueCounts
from jobwire.gateway.servicers._enqueue_stream import EnqueueStreams
from jobwire.gateway.servicers._rpc import Context, abort, unary
from jobwire.gateway.servicers._streams import StreamSlots
from jobwire.gateway.servicers._watch_frames import FrameFilter, FramePace
from jobwire.v1 import job_pb2, queue_service_pb2, queue_service_pb2_grpc

_FULL = job_pb2.JOB_VIEW_FULL
_BASIC = job_pb2.JOB_VIEW_BASIC


def _view(requested: job_pb2.JobView.ValueType, default: job_pb2.JobView.ValueType) -> bool:
    """Whether to include payload and result."""
    return (requested or default) == _FULL


def _enqueued(
    response: queue_service_pb2.EnqueueJobResponse, job: JobRecord, deduplicated: bool
) -> queue_service_pb2.EnqueueJobResponse:
    # The producer sent the payload; echoing it back would double the traffic.
    # Written in place: a Job built apart would be copied into the response.
    job.fill_proto(response.job, full=False)
    if deduplicated:
        response.deduplicated = True
    return response


async def _deliveries_first() -> None:
    """Let the delivery a single enqueue made possible leave before its answer.

    An enqueue wakes the worker sessions waiting for jobs: on the next loop
    iteration each leases jobs and queues its ``delivery`` frame, on the one
    after its stream writes it. Answering at once would put the answer's
    serialisation and write, and the producer's wake-up, ahead of the
    delivery: on a busy 2-core machine that added hundreds of microseconds to
    enqueue→start latency. The answer is built before these two iterations,
    so it shows the job as it was enqueued; the producer gets it about one
    delivery's write later.
    """
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def _no_workers() -> bool:
    return False


class QueueServicer(queue_service_pb2_grpc.QueueServiceServicer):
    """Serves QueueService on top of :class:`JobService`.

    Args:
        service: Validation and the provider.
        streams: The gateway's stream slots (``WatchJob`` holds one).
        workers_connected: Whether any worker stream is open, so that a
            single enqueue lets the delivery it caused go first.
    """

    def __init__(
        self,
        service: JobService,
        streams: StreamSlots,
        workers_connected: Callable[[], bool] = _no_workers,
    ) -> None:
        self._service = service
        self._streams = streams
        self._workers_connected = workers_connected
        #: The open ``EnqueueStream`` streams, which the gateway drains when it stops.
        self.enqueue_streams = EnqueueStreams(self.store)

    async def store(
        self,
        requests: Sequence[queue_service_pb2.EnqueueJobRequest],
        into: queue_service_pb2.EnqueueJobsResponse,
        *,
        batch: bool,
    ) -> None:
        """Enqueue jobs and write their results into ``into``: every enqueue RPC's one rule.

        A batch is validated as a whole, its errors naming the entry
        (``requests[3].type``); a single job's name its field (``type``).
        """
        results = await self._service.enqueue(requests, batch=batch)
        add = into.results.add
        for job, deduplicated in results:
            _enqueued(add(), job, deduplicated)
        # A batch is answered at once: batches are about throughput, and a
        # producer that waits for this answer to send its next batch would wait
        # longer. A single job lets the delivery it made possible go first.
        if not batch and self._workers_connected():
            await _deliveries_first()

    @unary
    async def EnqueueJob(
        self, request: queue_service_pb2.EnqueueJobRequest, context: Context
    ) -> queue_service_pb2.EnqueueJobResponse:
        """Enqueue one job."""
        response = queue_service_pb2.EnqueueJobsResponse()
        await self.store([request], response, batch=False)
        return response.results[0]

    @unary
    async def EnqueueJobs(
        self, request: queue_service_pb2.EnqueueJobsRequest, context: Context
    ) -> queue_service_pb2.EnqueueJobsResponse:
        """Enqueue a batch, validated as a whole."""
        response = queue_service_pb2.EnqueueJobsResponse()
        await self.store(request.requests, response, batch=True)
        return response

    async def EnqueueStream(
        self, request_iterator: Any, context: Context
    ) -> AsyncIterator[queue_service_pb2.EnqueueStreamResponse]:
        """Enqueue frames of jobs, each answered by its id, until the client half-closes."""
        try:
            with self._streams.hold():
                async for response in self.enqueue_streams.serve(context):
                    yield response
        except Exception as error:
            await abort(context, error)

    @unary
    async def GetJob(
        self, request: queue_service_pb2.GetJobRequest, context: Context
    ) -> queue_service_pb2.GetJobResponse:
        """Return one job."""
        job = await self._service.get_job(request.id)
        response = queue_service_pb2.GetJobResponse(
            job=job.to_proto(full=_view(request.view, _FULL))
        )
        reason = await self._service.waiting_reason(job)
        if reason:
            response.job.waiting_reason = reason
        return response

    @unary
    async def ListJobs(
        self, request: queue_service_pb2.ListJobsRequest, context: Context
    ) -> queue_service_pb2.ListJobsResponse:
        """Return one page of jobs."""
        jobs, token = await self._service.list_jobs(request)
        full = _view(request.view, _BASIC)
        return queue_service_pb2.ListJobsResponse(
            jobs=[job.to_proto(full=full) for job in jobs], next_page_token=token
        )

    @unary
    async def CancelJob(
        self, request: queue_service_pb2.CancelJobRequest, context: Context
    ) -> queue_service_pb2.CancelJobResponse:
        """Cancel a job."""
        job = await self._service.cancel_job(request.id, request.reason)
        return queue_service_pb2.CancelJobResponse(job=job.to_proto(full=False))

    @unary
    async def GetQueueStats(
        self, request: queue_service_pb2.GetQueueStatsRequest, context: Context
    ) -> queue_service_pb2.GetQueueStatsResponse:
        """Return per-queue counts."""
        rows = await self._service.stats(request.queue)
        return queue_service_pb2.GetQueueStatsResponse(queues=[_stats(row) for row in rows])

    @unary
    async def RetryJob(
        self, request: queue_service_pb2.RetryJobRequest, context: Context
    ) -> queue_service_pb2.RetryJobResponse:
        """Replay one dead, failed or cancelled job."""
        job = await self._service.retry_job(request)
        return queue_service_pb2.RetryJobResponse(job=job.to_proto(full=False))

    @unary
    async def RetryJobs(
        self, request: queue_service_pb2.RetryJobsRequest, context: Context
    ) -> queue_service_pb2.RetryJobsResponse:
        """Replay every selected job in one operation."""
        return queue_service_pb2.RetryJobsResponse(count=await self._service.retry_jobs(request))

    @unary
    async def PurgeJobs(
        self, request: queue_service_pb2.PurgeJobsRequest, context: Context
    ) -> queue_service_pb2.PurgeJobsResponse:
        """Delete (or count) the selected jobs."""
        return queue_service_pb2.PurgeJobsResponse(count=await self._service.purge_jobs(request))

    @unary
    async def PauseQueue(
        self, request: queue_service_pb2.PauseQueueRequest, context: Context
    ) -> queue_service_pb2.PauseQueueResponse:
        """Stop deliveries from a queue."""
        row = await self._service.pause_queue(request.queue, paused=True)
        return queue_service_pb2.PauseQueueResponse(stats=_stats(row))

    @unary
    async def ResumeQueue(
        self, request: queue_service_pb2.ResumeQueueRequest, context: Context
    ) -> queue_service_pb2.ResumeQueueResponse:
        """Resume deliveries from a queue."""
        row = await self._service.pause_queue(request.queue, paused=False)
        return queue_service_pb2.ResumeQueueResponse(stats=_stats(row))

    @unary
    async def GetQueueConfig(
        self, request: queue_service_pb2.GetQueueConfigRequest, context: Context
    ) -> queue_service_pb2.GetQueueConfigResponse:
        """Return a queue's flow control."""
        config = await self._service.queue_config(request.queue)
        return queue_service_pb2.GetQueueConfigResponse(config=config)

    @unary
    async def UpdateQueueConfig(
        self, request: queue_service_pb2.UpdateQueueConfigRequest, context: Context
    ) -> queue_service_pb2.UpdateQueueConfigResponse:
        """Change a queue's flow control."""
        config = await self._service.update_queue_config(request)
        return queue_service_pb2.UpdateQueueConfigResponse(config=config)

    @unary
    async def ListQueueConfigs(
        self, request: queue_service_pb2.ListQueueConfigsRequest, context: Context
    ) -> queue_service_pb2.ListQueueConfigsResponse:
        """Return every configured queue's flow control."""
        configs = await self._service.queue_configs()
        return queue_service_pb2.ListQueueConfigsResponse(configs=configs)

    async def WatchJob(
        self, request: queue_service_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[queue_service_pb2.WatchJobResponse]:
        """Stream the job's state until it is terminal."""
        full = _view(request.view, _BASIC)
        try:
            with self._streams.hold():
                async with self._service.watch(request.id) as (job, watch):
                    snapshot = job.to_proto(full=full)
                    while True:
                        yield queue_service_pb2.WatchJobResponse(job=snapshot)
                        if snapshot.state in _TERMINAL:
                            return
                        snapshot = await watch.next()
                        if not full:
                            snapshot = _basic(snapshot)
        except Exception as error:
            await abort(context, error)

    async def WatchJobs(
        self, request: queue_service_pb2.WatchJobsRequest, context: Context
    ) -> AsyncIterator[queue_service_pb2.WatchJobsResponse]:
        """Stream many jobs' changes, batched per frame, until every one is terminal.

        With a selector: every matching job's, until the client cancels.
        """
        full = _view(request.view, _BASIC)
        if request.HasField("selector"):
            async for frame in self._watch_selected(request, full, context):
                yield frame
            return
        try:
            with self._streams.hold():
                if request.only_new:
                    raise InvalidArgumentError("only_new", "applies to a selector, not to ids")
                async with self._service.watch_many(request.ids) as (jobs, watch):
                    # Each job's update time as last sent; a job leaves once its end is sent.
                    sent: dict[str, float] = {}
                    frame = queue_service_pb2.WatchJobsResponse()
                    for job in jobs:
                        job.fill_proto(frame.jobs.add(), full=full)
                        sent[job.id] = job.update_time
                    unfinished = {job.id for job in jobs if not job.state.is_terminal}
                    yield frame
                    pace = FramePace()
                    while unfinished:
                        await pace.wait()
                        # The records as they are now: a job that changed several
                        # times since the last frame is written once.
                        frame = queue_service_pb2.WatchJobsResponse()
                        for job in await watch.next():
                            # A change published between the watch and the first
                            # read may be older than what was sent.
                            if job.id not in unfinished or job.update_time < sent[job.id]:
                                continue
                            sent[job.id] = job.update_time
                            job.fill_proto(frame.jobs.add(), full=full)
                            if job.state.is_terminal:
                                unfinished.discard(job.id)
                        if frame.jobs:
                            yield frame
                            pace.sent()
        except Exception as error:
            await abort(context, error)

    async def _watch_selected(
        self, request: queue_service_pb2.WatchJobsRequest, full: bool, context: Context
    ) -> AsyncIterator[queue_service_pb2.WatchJobsResponse]:
        """``WatchJobs`` by selector: the jobs matching now, then every matching job's changes."""
        try:
            with self._streams.hold():
                if request.ids:
                    raise InvalidArgumentError("ids", "give ids or a selector, not both")
                async with self._service.watch_selected(
                    request.selector, only_new=request.only_new
                ) as (jobs, watch):
                    ends = FrameFilter()
                    for start in range(0, max(len(jobs), 1), _FIRST_FRAMES):
                        frame = queue_service_pb2.WatchJobsResponse()
                        for job in jobs[start : start + _FIRST_FRAMES]:
                            if ends.take(job):
                                job.fill_proto(frame.jobs.add(), full=full)
                        yield frame
                    pace = FramePace()
                    while True:
                        await pace.wait()
                        frame = queue_service_pb2.WatchJobsResponse()
                        for job in await watch.next():
                            if ends.take(job):
                                job.fill_proto(frame.jobs.add(), full=full)
                        if frame.jobs:
                            yield frame
                            pace.sent()
        except Exception as error:
            await abort(context, error)


_FIRST_FRAMES = 1000
"""Most jobs in one of the frames that carry the jobs a selector matches at the start."""

_TERMINAL = frozenset(
    {job_pb2.Job.STATE_COMPLETED, job_pb2.Job.STATE_DEAD, job_pb2.Job.STATE_CANCELLED}
)


def _basic(snapshot: job_pb2.Job) -> job_pb2.Job:
    basic = job_pb2.Job()
    basic.CopyFrom(snapshot)
    basic.ClearField("payload")
    basic.ClearField("result")
    return basic


def _stats(row: QueueCounts) -> queue_service_pb2.QueueStats:
    stat = queue_service_pb2.QueueStats(
        queue=row.queue,
        oldest_pending_age=duration(row.oldest_pending_age),
        workers=row.workers,
        backend=_backend(row.backend),
        unserved_types=row.unserved_types,
        paused=row.paused,
    )
    if row.held is not None:
        held = row.held
        stat.held.by_key = held.by_key
        stat.held.by_concurrency = held.by_concurrency
        stat.held.by_rate = held.by_rate
        stat.held.busy_keys = held.busy_keys
    for state, count in row.by_state.items():
        setattr(stat, state.name.lower(), count)
    return stat


def _backend(counts: tuple[int, int, int] | None) -> queue_service_pb2.BackendCounts | None:
    if counts is None:
        return None
    visible, in_flight, delayed = counts
    return queue_service_pb2.BackendCounts(visible=visible, in_flight=in_flight, delayed=delayed)
