"""client.watch(jobs): a live progress bar fed by WatchJob streams, sync and async."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator

import pytest

from jobwire.client import (
    AsyncClient,
    Client,
    Job,
    JobNotFoundError,
    JobRequest,
    JobState,
    _progress,
)
from jobwire.gateway import EmbeddedGateway
from jobwire.worker import HandlerRegistry, JobContext, NonRetryableError, Worker

from support import RawWorker, Request

OpenWorker = Callable[..., Awaitable[RawWorker]]

registry = HandlerRegistry()


@registry.handler("resize")
async def resize(ctx: JobContext) -> int:
    ctx.progress(1, 2, "decoded")
    await asyncio.sleep(0.01)
    if ctx.payload < 0:
        raise NonRetryableError("negative size")
    return int(ctx.payload) // 2


@pytest.fixture
def worker(embedded_gateway: EmbeddedGateway) -> Iterator[Worker]:
    """An SDK worker for `resize` jobs, in its background thread."""
    running = Worker(embedded_gateway.address, registry=registry, concurrency=8)
    running.start()
    yield running
    running.stop(10)


def watch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "jobwire-watch"]


def test_sync_watch_draws_the_bar_and_returns_the_final_jobs(
    sync_client: Client, worker: Worker, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = [JobRequest("resize", n) for n in range(27)]
    requests += [JobRequest("resize", -1, max_retries=0) for _ in range(3)]
    jobs = sync_client.enqueue_many(requests)

    done = sync_client.watch(jobs, desc="resizing")

    assert [job.id for job in done] == [job.id for job in jobs]
    assert [job.state for job in done] == [JobState.COMPLETED] * 27 + [JobState.DEAD] * 3
    assert repr(done) == "JobList(30 jobs: 27 completed, 3 dead)"
    final = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1].rstrip()
    assert final.startswith("resizing: 100%|")
    assert final.endswith("30/30 done: 27 completed, 3 dead")
    assert not watch_threads()


def test_sync_watch_with_fewer_streams_than_jobs(sync_client: Client, worker: Worker) -> None:
    jobs = sync_client.enqueue_many([JobRequest("resize", n) for n in range(40)])
    done = sync_client.watch(jobs, max_streams=3)
    assert {job.state for job in done} == {JobState.COMPLETED}


def test_watch_timeout_returns_the_jobs_as_last_seen(sync_client: Client) -> None:
    job = sync_client.enqueue("nobody-handles-this")
    started = time.monotonic()
    [seen] = sync_client.watch(job, timeout=0.3)
    assert 0.3 <= time.monotonic() - started < 3
    assert seen.id == job.id
    assert seen.state is JobState.PENDING
    assert not watch_threads()


def test_watch_of_an_unknown_job(sync_client: Client) -> None:
    with pytest.raises(JobNotFoundError):
        sync_client.watch([Job(id="no-such-job", type="t")])
    assert not watch_threads()


def test_interrupting_a_sync_watch_closes_its_streams(
    sync_client: Client, embedded_gateway: EmbeddedGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = sync_client.enqueue("nobody-handles-this")

    def interrupt(self: _progress.JobsProgress, frame: Iterable[_progress.Update]) -> None:
        # What Ctrl+C or Jupyter's "interrupt kernel" raises in the calling thread.
        raise KeyboardInterrupt

    monkeypatch.setattr(_progress.JobsProgress, "update_frame", interrupt)
    with pytest.raises(KeyboardInterrupt):
        sync_client.watch(job)
    assert not watch_threads()
    events = embedded_gateway.gateway.provider.events
    deadline = time.monotonic() + 5
    while events.watched() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not events.watched()  # the gateway saw the stream go


async def test_async_watch_shows_handler_progress_live(
    client: AsyncClient, raw_worker: OpenWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await client.enqueue("t")
    second = await client.enqueue("t", max_retries=0)
    watching = asyncio.create_task(client.watch([first, second]))
    worker = await raw_worker(max_in_flight=2)
    leases = {item.job.id: item.lease_id for item in await worker.jobs(2)}
    # Past tqdm's 0.1 s between redraws, so the progress shows at once.
    await asyncio.sleep(0.2)
    progress = Request.Progress(lease_id=leases[first.id])
    progress.progress.current, progress.progress.total, progress.progress.message = 1, 4, "parsed"
    await worker.send(Request(progress=progress))

    shown = ""
    async with asyncio.timeout(5):
        while "25% parsed" not in shown:
            await asyncio.sleep(0.02)
            shown += capsys.readouterr().err
    assert (
        shown.replace("\r", "\n")
        .splitlines()[-1]
        .rstrip()
        .endswith("0/2 done: 2 processing; 25% parsed")
    )
    await worker.ack(leases[first.id], result=b"1")
    await worker.nack(leases[second.id], message="bad input", retryable=False)

    done = await watching
    assert [job.state for job in done] == [JobState.COMPLETED, JobState.DEAD]
    assert done[1].last_error is not None
    assert done[1].last_error.message == "bad input"
    final = capsys.readouterr().err.replace("\r", "\n").splitlines()[-1]
    assert final.rstrip().endswith("2/2 done: 1 completed, 1 dead")  # tqdm pads with spaces


async def test_async_watch_of_an_unknown_job(client: AsyncClient) -> None:
    with pytest.raises(JobNotFoundError):
        await client.watch(Job(id="no-such-job", type="t"))
