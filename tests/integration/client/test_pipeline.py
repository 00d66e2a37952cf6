"""The blocking Client's fast producers: threads sharing one Client, and the pipelined mode."""

from __future__ import annotations

import threading

import pytest

from jobwire.client import (
    Client,
    EnqueueFailedError,
    InvalidArgumentError,
    Job,
    JobRequest,
    PendingJob,
)
from jobwire.client._sync_coalescer import send

BAD_QUEUE = "bad queue!"  # the gateway refuses it; the client sends it as it is


def pending_count(client: Client, queue: str) -> int:
    [row] = client.stats(queue)
    return row.pending


def test_a_refused_job_fails_its_own_handle_and_one_flush_and_the_others_are_stored(
    sync_client: Client,
) -> None:
    pipe = sync_client.pipeline()
    handles: list[PendingJob] = []
    for n in range(60):
        handles.append(pipe.enqueue("t", n, queue="piped"))
        if n == 30:
            bad = pipe.enqueue("t", n, queue=BAD_QUEUE)
    with pytest.raises(EnqueueFailedError) as failed:
        pipe.flush()
    assert failed.value.failures == [bad]
    with pytest.raises(InvalidArgumentError, match="queue"):
        bad.result()
    jobs = [handle.result() for handle in handles]
    assert all(isinstance(job, Job) for job in jobs)
    assert [job.payload for job in jobs] == list(range(60)), "every job, in order"
    assert len({job.id for job in jobs}) == 60
    # Nothing lost, nothing stored twice (a refused batch is resent job by job).
    assert pending_count(sync_client, "piped") == 60
    pipe.flush()  # the failure was reported once
    pipe.close()


def test_close_reports_the_failures_no_flush_reported(sync_client: Client) -> None:
    pipe = sync_client.pipeline()
    good = pipe.enqueue("t", 1, queue="closing")
    bad = pipe.enqueue("t", 2, queue=BAD_QUEUE)
    with pytest.raises(EnqueueFailedError) as failed:
        pipe.close()
    assert failed.value.failures == [bad]
    assert good.result().queue == "closing"
    with pytest.raises(RuntimeError, match="closed"):
        pipe.enqueue("t", 3)


def test_a_pipeline_used_as_a_context_manager_flushes_on_exit(sync_client: Client) -> None:
    with sync_client.pipeline() as pipe:
        handles = [pipe.enqueue("t", n, queue="ctx") for n in range(25)]
    assert all(handle.done() for handle in handles)
    assert pending_count(sync_client, "ctx") == 25


def test_threads_sharing_one_client_each_get_their_own_job_or_error(sync_client: Client) -> None:
    stored: list[Job] = []
    refused: list[Exception] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def produce(thread: int) -> None:
        start.wait()
        for n in range(20):
            queue = BAD_QUEUE if (thread, n) == (7, 10) else "threads"
            try:
                job = sync_client.enqueue("t", [thread, n], queue=queue)
            except InvalidArgumentError as error:
                with lock:
                    refused.append(error)
            else:
                with lock:
                    stored.append(job)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(refused) == 1
    assert len(stored) == 16 * 20 - 1
    assert len({job.id for job in stored}) == len(stored)
    assert pending_count(sync_client, "threads") == 16 * 20 - 1


def test_a_batch_with_a_refused_job_is_resent_job_by_job(sync_client: Client) -> None:
    requests = [JobRequest("t", n, queue=BAD_QUEUE if n == 2 else "split") for n in range(5)]
    protos = [sync_client._enqueue_request(request) for request in requests]
    outcomes = send(sync_client, sync_client._queue, protos)
    assert [type(outcome).__name__ for outcome in outcomes] == [
        "EnqueueJobResponse",
        "EnqueueJobResponse",
        "InvalidArgumentError",
        "EnqueueJobResponse",
        "EnqueueJobResponse",
    ]
    assert pending_count(sync_client, "split") == 4


def test_enqueue_blocks_while_max_pending_jobs_are_unanswered(sync_client: Client) -> None:
    with sync_client.pipeline(max_pending=2) as pipe:
        assert pipe.max_pending == 2
        handles = []
        for n in range(12):
            handles.append(pipe.enqueue("t", n, queue="bounded"))
            assert pipe.unanswered <= 2, "the bound holds: enqueue waited for room"
    assert [handle.result().payload for handle in handles] == list(range(12))
    assert pending_count(sync_client, "bounded") == 12


@pytest.mark.parametrize("max_pending", [0, -1, 1.5, True])
def test_a_bad_max_pending_is_refused(sync_client: Client, max_pending: object) -> None:
    with pytest.raises(ValueError, match="max_pending must be a positive int"):
        sync_client.pipeline(max_pending=max_pending)  # type: ignore[arg-type]
