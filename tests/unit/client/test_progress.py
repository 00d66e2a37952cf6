"""`watch` internals: the progress bar's text, bounded stream fan-out, the stream thread."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import pytest

from jobwire.client import Job, JobState
from jobwire.client._progress import JobsProgress, StreamThread, as_jobs, follow
from jobwire.v1 import job_pb2, queue_service_pb2

P = job_pb2.Job


def progress_bar(jobs: Sequence[Job]) -> tuple[JobsProgress, io.StringIO]:
    out = io.StringIO()
    # mininterval=0: draw every update, so the test sees each state. A StringIO has
    # no encoding, so tqdm draws the bar in ASCII.
    return JobsProgress(jobs, desc="jobs", convert=Job.from_proto, file=out, mininterval=0), out


def lines(out: io.StringIO) -> list[str]:
    """The bar's successive renderings (tqdm redraws a line with a carriage return)."""
    return [line.rstrip() for line in out.getvalue().replace("\n", "\r").split("\r") if line]


def test_text_output_counts_states_and_shows_handler_progress() -> None:
    jobs = [Job(id=str(n), type="t") for n in range(4)]
    bar, out = progress_bar(jobs)
    with bar:
        check_text_output(bar, out)
    assert out.getvalue().endswith("\n")  # the final line stays
    assert lines(out)[-1].startswith("jobs: 100%|##########|")
    assert lines(out)[-1].endswith("4/4 done: 2 completed, 1 dead, 1 cancelled")
    assert [job.state for job in bar.jobs] == [
        JobState.COMPLETED,
        JobState.COMPLETED,
        JobState.DEAD,
        JobState.CANCELLED,
    ]


def check_text_output(bar: JobsProgress, out: io.StringIO) -> None:
    assert lines(out)[-1] == "jobs:   0%|          | 00:00<?, 0/4 done: 4 pending"

    reading = job_pb2.JobProgress(current=1, total=4, message="reading")
    bar.update_frame([(0, P(id="0", state=P.STATE_PROCESSING, progress=reading))])
    # A quarter of one job out of four: the bar moves before any job ends.
    assert lines(out)[-1].startswith("jobs:   6%|")
    assert lines(out)[-1].endswith("0/4 done: 3 pending, 1 processing; 25% reading")

    bar.update_frame([(0, P(id="0", state=P.STATE_COMPLETED))])
    bar.update_frame([(1, P(id="1", state=P.STATE_FAILED))])
    failure = job_pb2.JobFailure(message="x")
    bar.update_frame([(2, P(id="2", state=P.STATE_DEAD, last_error=failure))])
    assert lines(out)[-1].endswith("2/4 done: 1 pending, 1 completed, 1 failed, 1 dead")
    assert lines(out)[-1].startswith("jobs:  50%|#####     |")

    bar.update_frame([(1, P(id="1", state=P.STATE_COMPLETED))])
    bar.update_frame([(3, P(id="3", state=P.STATE_CANCELLED))])


def test_progress_without_total_is_shown_but_does_not_move_the_bar() -> None:
    bar, out = progress_bar([Job(id="0", type="t")])
    with bar:
        unknown = job_pb2.JobProgress(current=7, message="rows")
        bar.update_frame([(0, P(id="0", state=P.STATE_PROCESSING, progress=unknown))])
        assert lines(out)[-1].startswith("jobs:   0%|")
        assert lines(out)[-1].endswith("; 7/? rows")


def test_handler_message_goes_when_its_job_ends() -> None:
    bar, out = progress_bar([Job(id="0", type="t")])
    with bar:
        half = job_pb2.JobProgress(current=1, total=2, message="halfway")
        bar.update_frame([(0, P(id="0", state=P.STATE_PROCESSING, progress=half))])
        bar.update_frame([(0, P(id="0", state=P.STATE_COMPLETED, progress=half))])
    assert lines(out)[-1].endswith("1/1 done: 1 completed")


def test_a_frame_of_changes_is_drawn_once_and_its_jobs_built_when_read() -> None:
    jobs = [Job(id=str(n), type="t") for n in range(3)]
    built: list[str] = []

    def convert(proto: P) -> Job:
        built.append(proto.id)
        return Job.from_proto(proto)

    out = io.StringIO()
    bar = JobsProgress(jobs, desc="jobs", convert=convert, file=out, mininterval=0)
    with bar:
        drawn = len(lines(out))
        reading = job_pb2.JobProgress(current=1, total=2, message="reading")
        bar.update_frame(
            [
                (0, P(id="0", state=P.STATE_COMPLETED)),
                (1, P(id="1", state=P.STATE_PROCESSING, progress=reading)),
                (2, P(id="2", state=P.STATE_DEAD)),
            ]
        )
        assert len(lines(out)) == drawn + 1
        assert lines(out)[-1].endswith("2/3 done: 1 processing, 1 completed, 1 dead; 50% reading")
        bar.update_frame([(1, P(id="1", state=P.STATE_COMPLETED))])
        assert lines(out)[-1].endswith("3/3 done: 2 completed, 1 dead")
        assert built == []  # nothing read the jobs yet
    assert [job.state for job in bar.jobs] == [
        JobState.COMPLETED,
        JobState.COMPLETED,
        JobState.DEAD,
    ]
    assert sorted(built) == ["0", "1", "2"]  # each job built once, from its latest state


def test_as_jobs_takes_one_job_or_many() -> None:
    job = Job(id="a", type="t")
    assert as_jobs(job) == [job]
    assert as_jobs(iter([job, job])) == [job, job]


class FakeCall:
    """A WatchJobs call: one frame per step, with each job's state at that step."""

    def __init__(self, stub: FakeStub, job_ids: Sequence[str]) -> None:
        self.stub = stub
        self.job_ids = list(job_ids)
        self.cancelled = False

    def __aiter__(self) -> AsyncIterator[queue_service_pb2.WatchJobsResponse]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[queue_service_pb2.WatchJobsResponse]:
        self.stub.open += 1
        self.stub.most_open = max(self.stub.most_open, self.stub.open)
        try:
            lifecycles = {job_id: list(self.stub.states(job_id)) for job_id in self.job_ids}
            for step in range(max(len(states) for states in lifecycles.values())):
                await asyncio.sleep(0.001)
                yield queue_service_pb2.WatchJobsResponse(
                    jobs=[
                        P(id=job_id, state=states[step])
                        for job_id, states in lifecycles.items()
                        if step < len(states)
                    ]
                )
        finally:
            self.stub.open -= 1

    def cancel(self) -> None:
        self.cancelled = True


class FakeStub:
    def __init__(self, states: Callable[[str], Sequence[P.State.ValueType]]) -> None:
        self.states = states
        self.calls: list[FakeCall] = []
        self.open = 0
        self.most_open = 0

    def WatchJobs(  # the gRPC method name
        self, request: queue_service_pb2.WatchJobsRequest, metadata: Sequence[tuple[str, str]]
    ) -> FakeCall:
        assert metadata == (("authorization", "Bearer t"),)
        call = FakeCall(self, request.ids)
        self.calls.append(call)
        return call


def follow_frames(
    stub: FakeStub, ids: Sequence[str], **options: Any
) -> list[list[tuple[int, str, int]]]:
    """The `(index, id, state)` updates `follow` hands over, frame by frame."""
    frames: list[list[tuple[int, str, int]]] = []
    options.setdefault("max_streams", 3)
    options.setdefault("time_limit", None)
    asyncio.run(
        follow(
            cast(Any, stub),
            ids,
            lambda frame: frames.append([(index, job.id, job.state) for index, job in frame]),
            metadata=(("authorization", "Bearer t"),),
            **options,
        )
    )
    return frames


def run_follow(stub: FakeStub, ids: Sequence[str], **options: Any) -> list[tuple[int, str, int]]:
    return [update for frame in follow_frames(stub, ids, **options) for update in frame]


def test_follow_hands_each_frame_over_in_one_call() -> None:
    lifecycle = [P.STATE_PENDING, P.STATE_COMPLETED]
    stub = FakeStub(lambda job_id: lifecycle)
    frames = follow_frames(stub, ["a", "b", "a"], max_streams=1)
    # One stream, one frame per step, each with every position of every job.
    assert [sorted((index, job_id) for index, job_id, _ in frame) for frame in frames] == [
        [(0, "a"), (1, "b"), (2, "a")]
    ] * 2


def test_follow_watches_many_jobs_per_stream_with_a_bounded_number_of_streams() -> None:
    lifecycle = [P.STATE_PENDING, P.STATE_PROCESSING, P.STATE_COMPLETED]
    stub = FakeStub(lambda job_id: lifecycle)
    ids = [f"j{n}" for n in range(20)]
    seen = run_follow(stub, ids, ids_per_stream=4)
    assert stub.most_open == 3
    # Five streams of four ids each, in the order given.
    assert [call.job_ids for call in stub.calls] == [ids[i : i + 4] for i in range(0, 20, 4)]
    assert all(call.cancelled for call in stub.calls)  # each stream released
    for index, job_id in enumerate(ids):
        assert [(i, state) for i, j, state in seen if j == job_id] == [
            (index, state) for state in lifecycle
        ]


def test_follow_reports_a_job_given_twice_at_both_positions_from_one_stream() -> None:
    stub = FakeStub(lambda job_id: [P.STATE_COMPLETED])
    seen = run_follow(stub, ["a", "b", "a"])
    assert [call.job_ids for call in stub.calls] == [["a", "b"]]
    assert sorted(seen) == [
        (0, "a", P.STATE_COMPLETED),
        (1, "b", P.STATE_COMPLETED),
        (2, "a", P.STATE_COMPLETED),
    ]


def test_follow_gives_up_quietly_after_its_time_limit() -> None:
    def forever(job_id: str) -> Sequence[P.State.ValueType]:
        return [P.STATE_COMPLETED] if job_id == "done" else [P.STATE_PENDING] * 100_000

    stub = FakeStub(forever)
    seen = run_follow(stub, ["done", "stuck"], time_limit=0.1)
    assert (0, "done", P.STATE_COMPLETED) in seen
    assert stub.open == 0


def test_follow_fails_with_the_first_stream_error_and_closes_the_others() -> None:
    def states(job_id: str) -> Sequence[P.State.ValueType]:
        if job_id == "bad":
            raise LookupError("no such job")
        return [P.STATE_PENDING] * 100_000

    stub = FakeStub(states)
    with pytest.raises(LookupError, match="no such job"):
        run_follow(stub, ["a", "bad", "c"], ids_per_stream=1)
    assert stub.open == 0


def test_follow_rejects_no_streams() -> None:
    with pytest.raises(ValueError, match="max_streams must be at least 1"):
        run_follow(FakeStub(lambda _: []), ["a"], max_streams=0)


def test_stream_thread_hands_over_items_in_order_then_the_error() -> None:
    async def main(emit: Callable[[int], None]) -> None:
        for n in range(5):
            emit(n)
            await asyncio.sleep(0)
        raise RuntimeError("stream broke")

    received: list[int] = []
    with StreamThread(main) as items, pytest.raises(RuntimeError, match="stream broke"):
        received.extend(items)
    assert received == [0, 1, 2, 3, 4]


def test_stream_thread_cancels_its_coroutine_on_exit() -> None:
    cancelled = threading.Event()

    async def main(emit: Callable[[str], None]) -> None:
        emit("started")
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with StreamThread(main) as items:
        assert next(iter(items)) == "started"
    assert cancelled.is_set()
    assert not any(thread.name == "jobwire-watch" for thread in threading.enumerate())
