"""`watch`: follow many jobs live over `WatchJobs` streams, shown as a tqdm progress bar.

Design. The gateway pushes the jobs' changes on a `WatchJobs` server stream, so
watching never polls, and one stream follows many jobs (up to
`IDS_PER_STREAM`), each frame carrying every change since the previous one:
watching 10,000 jobs costs a few frames per batch of changes, not a stream
and three messages per job.

* `follow` runs on grpc.aio: a stream is a coroutine, not a thread. More ids
  than one stream takes are split over several streams, at most `max_streams`
  open at once. The gateway sends every job's terminal state exactly once,
  also for jobs that ended before the watch began.
* `AsyncClient.watch` runs it on the caller's loop (a notebook's own loop, with
  top-level `await`).
* `Client.watch` runs it on a private event loop in one daemon thread
  (`StreamThread`), on a grpc.aio channel of its own, and reads the updates
  from a queue in the calling thread, a frame at a time (one hand-off between
  threads and one redraw per frame, not per job: they compete for the CPU
  with the gateway and workers watched). The bar is drawn in the caller's
  thread, which keeps Jupyter's widget output in the cell that called
  `watch`, and Ctrl+C / Kernel → Interrupt reaches the caller, which cancels
  the streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from jobwire.client import _display, _text
from jobwire.client._job_lists import JobList
from jobwire.client._models import Job, JobProgress, JobState
from jobwire.v1 import job_pb2, queue_service_pb2

if TYPE_CHECKING:
    from tqdm import tqdm

    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub

_T = TypeVar("_T")

#: Default number of `WatchJobs` streams one `watch` keeps open at once.
MAX_STREAMS = 256
#: Jobs one `WatchJobs` stream follows (the gateway takes up to 100,000).
IDS_PER_STREAM = 10_000

#: Text after the bar: the time so far and left, then the counts (tqdm puts ", " first).
_BAR_FORMAT = "{l_bar}{bar}| {elapsed}<{remaining}{postfix}"

Update = tuple[int, job_pb2.Job]
"""A watched job's position in the ids given, and one state it went through."""
OnFrame = Callable[[list[Update]], None]


def as_jobs(jobs: Job | Iterable[Job]) -> list[Job]:
    """Reads the `jobs` argument of `watch`: one job or several."""
    return [jobs] if isinstance(jobs, Job) else list(jobs)


async def follow(
    stub: QueueServiceAsyncStub,
    job_ids: Sequence[str],
    on_frame: OnFrame,
    *,
    metadata: Sequence[tuple[str, str]],
    max_streams: int,
    time_limit: float | None,
    ids_per_stream: int = IDS_PER_STREAM,
    view: job_pb2.JobView.ValueType = job_pb2.JOB_VIEW_BASIC,
) -> None:
    """Calls `on_frame(updates)` with the states the jobs go through until all end.

    One call per frame a stream receives, with its `(index, job)` updates: the
    caller hands them on and redraws once per frame, not once per job.

    A job's terminal state comes exactly once; states in between may be
    skipped when they follow each other faster than the frames (the latest wins).

    Args:
        stub: QueueService stub on a grpc.aio channel of the running loop.
        job_ids: The jobs; an update's `index` is a position in it (a job
            given twice is reported at both positions).
        on_frame: Called on the running loop with the updates of each frame.
        metadata: Sent with every stream.
        max_streams: Most streams open at once.
        time_limit: Seconds after which to stop following, without error; None
            follows until every job has ended.
        ids_per_stream: Most jobs one stream follows.
        view: How much of each job the updates carry (FULL: with results).

    Raises:
        grpc.RpcError: A stream failed, e.g. a job does not exist.
    """
    if max_streams < 1:
        raise ValueError(f"max_streams must be at least 1, got {max_streams}")
    positions: dict[str, list[int]] = {}
    for index, job_id in enumerate(job_ids):
        positions.setdefault(job_id, []).append(index)
    ids = list(positions)
    waiting = iter(range(0, len(ids), ids_per_stream))

    def indexes(job_id: str) -> list[int]:
        found = positions.get(job_id)
        if found is None:  # given as a prefix of its id
            found = next((v for k, v in positions.items() if job_id.startswith(k)), [])
            positions[job_id] = found
        return found

    async def slot() -> None:
        for start in waiting:
            chunk = ids[start : start + ids_per_stream]
            request = queue_service_pb2.WatchJobsRequest(ids=chunk, view=view)
            call = stub.WatchJobs(request, metadata=metadata)
            try:
                async for response in call:
                    updates = [(i, job) for job in response.jobs for i in indexes(job.id)]
                    if updates:
                        on_frame(updates)
            finally:
                call.cancel()

    streams = -(-len(ids) // ids_per_stream)
    slots = [asyncio.ensure_future(slot()) for _ in range(min(max_streams, streams))]
    try:
        async with asyncio.timeout(time_limit) as deadline:
            await asyncio.gather(*slots)
    except TimeoutError:
        if not deadline.expired():
            raise
    finally:
        for task in slots:
            task.cancel()
        await asyncio.gather(*slots, return_exceptions=True)


class JobsProgress:
    """The tqdm bar of a `watch`, and the latest state of every watched job.

    The bar's position is the number of finished jobs (completed, dead or
    cancelled) plus the fraction done that handlers report for running jobs, so
    it moves during long jobs too. After the bar come the counts by state and
    the latest handler message.

    `tqdm.auto` draws a widget in Jupyter and text elsewhere (stderr, refreshed
    at most ten times a second).
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        desc: str,
        convert: Callable[[job_pb2.Job], Job],
        **bar_options: Any,
    ) -> None:
        # Imported here: tqdm.auto picks the notebook widget when a kernel runs the code.
        from tqdm.auto import tqdm

        self._jobs = list(jobs)
        self._state_at = [job.state for job in self._jobs]
        self._states = Counter(state.value for state in self._state_at)
        # The latest message of jobs whose `Job` is not built yet (see `update_frame`).
        self._unread: dict[int, job_pb2.Job] = {}
        self._convert = convert
        # Fraction done of unfinished jobs whose handler reported a total.
        self._fractions: dict[int, float] = {}
        self._note = ""
        self._note_from = -1
        # miniters=0 lets an update that only changes the counts refresh the text.
        self._bar: tqdm[Any] = tqdm(
            total=len(self._jobs),
            desc=desc,
            unit="job",
            miniters=0,
            bar_format=_BAR_FORMAT,
            **bar_options,
        )
        self._bar.set_postfix_str(self._postfix(), refresh=True)

    @property
    def jobs(self) -> JobList:
        """Every watched job as last seen, in the order given."""
        if self._unread:
            for index, proto in self._unread.items():
                self._jobs[index] = self._convert(proto)
            self._unread.clear()
        return JobList(tuple(self._jobs))

    def update_frame(self, frame: Iterable[Update]) -> None:
        """Records a frame's `(index, message)` updates, then redraws once (when due).

        A message becomes a `Job` (`convert`) only when `jobs` is read: most
        states a watch sees are passed over by the next one.
        """
        for index, proto in frame:
            self._unread[index] = proto
            reported = proto.HasField("progress")
            progress = JobProgress.from_proto(proto.progress) if reported else None
            self._record(index, JobState.from_proto(proto.state), progress)
        self._redraw()

    def _record(self, index: int, state: JobState, progress: JobProgress | None) -> None:
        self._states[self._state_at[index].value] -= 1
        self._states[state.value] += 1
        self._state_at[index] = state
        fraction = progress.fraction if progress else None
        if state.is_terminal or fraction is None:
            self._fractions.pop(index, None)
        else:
            self._fractions[index] = min(max(fraction, 0.0), 1.0)
        if progress and not state.is_terminal:
            self._note, self._note_from = _display.progress_text(progress), index
        elif index == self._note_from:
            self._note, self._note_from = "", -1

    def _redraw(self) -> None:
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        # Set, not added: increments of fractions would drift, and a bar left a
        # hair short of its total ends red in Jupyter.
        self._bar.n = self._position()
        self._bar.update(0)  # redraws once tqdm's refresh interval has passed

    def close(self) -> None:
        """Draws the final state; in Jupyter an unfinished bar turns red."""
        self._bar.set_postfix_str(self._postfix(), refresh=False)
        self._bar.close()

    def _finished(self) -> int:
        return sum(self._states[state.value] for state in JobState if state.is_terminal)

    def _position(self) -> float:
        return self._finished() + sum(self._fractions.values())

    def _postfix(self) -> str:
        counts = _text.state_summary(self._states)
        text = f"{self._finished()}/{len(self._jobs)} done: {counts}"
        return f"{text}; {self._note}" if self._note else text

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _Done:
    """Marks the end of a `StreamThread`'s updates."""


_DONE = _Done()


class StreamThread(Generic[_T]):
    """Runs a coroutine on a private event loop in a daemon thread; iterate over what it emits.

    The coroutine gets an `emit` callable; iterating yields what it emits, in
    order, in the iterating thread, then raises what the coroutine raised.
    Leaving the `with` block cancels the coroutine and waits for its thread.

    For the blocking client, which must not touch the caller's event loop (a
    notebook runs one): grpc.aio objects are created inside the coroutine, so
    they belong to the private loop.
    """

    def __init__(self, main: Callable[[Callable[[_T], None]], Awaitable[None]]) -> None:
        self._main = main
        self._items: queue.SimpleQueue[_T | _Done] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="jobwire-watch", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._on_loop())
        except BaseException as error:  # handed to the iterating thread
            self._error = error
        finally:
            self._started.set()
            self._items.put(_DONE)

    async def _on_loop(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._started.set()
        await self._main(self._items.put)

    def __iter__(self) -> Iterator[_T]:
        while not isinstance(item := self._items.get(), _Done):
            yield item
        if self._error is not None:
            raise self._error

    def __enter__(self) -> Self:
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            # RuntimeError: the loop already closed, the coroutine is over.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        self._thread.join()
