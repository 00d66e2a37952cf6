"""The blocking producer's rates, one job per call, and what ``watch()`` costs.

One gateway process (memory provider) and one worker process (concurrency 8)
that takes every queue below, so the jobs run while they are enqueued:

- one thread, ``Client.enqueue`` once per job (waits for each answer; a
  frame on the client's ``EnqueueStream``);
- one thread, ``Client.pipeline()``: ``enqueue`` once per job, timed until
  ``close()`` has every answer;
- 16 threads sharing one ``Client``, ``enqueue`` once per job each
  (calls made while frames are in flight share the next frame);
- watch overhead: ``--watch-jobs`` jobs enqueued with ``enqueue_many``, timed
  until the worker has run them all, without and then with ``client.watch``
  over them (one ``WatchJobs`` stream), in the same process pair.

Each figure is the median of ``--repeat`` runs, with the spread (min..max).
Run: ``python3 -m hatch run bench:python bench/producers.py``.
"""

from __future__ import annotations

import argparse
import io
import threading
import time
from contextlib import redirect_stderr

from jobwire.client import Client, JobRequest

from measures import POLL, report
from processes import gateway, worker

QUEUES = ("one", "piped", "threads", "plain", "watched")


def wait_done(client: Client, queue: str, count: int, within: float = 120) -> float:
    """Wait until ``count`` jobs of ``queue`` finished; return when that was seen."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        [row] = client.stats(queue)
        if row.completed + row.dead >= count:
            return time.perf_counter()
        time.sleep(POLL)
    raise TimeoutError(f"{queue}: jobs did not finish within {within}s")


def one_thread(client: Client, jobs: int) -> float:
    start = time.perf_counter()
    for _ in range(jobs):
        client.enqueue("noop", {}, queue="one")
    return jobs / (time.perf_counter() - start)


def pipelined(client: Client, jobs: int) -> float:
    start = time.perf_counter()
    with client.pipeline() as pipe:
        for _ in range(jobs):
            pipe.enqueue("noop", {}, queue="piped")
    return jobs / (time.perf_counter() - start)


def threads(client: Client, jobs: int, count: int = 16) -> float:
    each = jobs // count
    barrier = threading.Barrier(count + 1)

    def produce() -> None:
        barrier.wait()
        for _ in range(each):
            client.enqueue("noop", {}, queue="threads")

    workers = [threading.Thread(target=produce) for _ in range(count)]
    for thread in workers:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in workers:
        thread.join()
    return each * count / (time.perf_counter() - start)


def run_time(client: Client, jobs: int, queue: str, *, watch: bool) -> float:
    start = time.perf_counter()
    batch = client.enqueue_many(JobRequest("noop", {}, queue=queue) for _ in range(jobs))
    if watch:
        with redirect_stderr(io.StringIO()):  # the progress bar
            client.watch(batch)
        end = time.perf_counter()
    else:
        end = wait_done(client, queue, jobs)
    return end - start


def one_run(jobs: int, watch_jobs: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with gateway() as (_, address), Client(address) as client:
        queue_args = [arg for queue in QUEUES for arg in ("--queue", queue)]
        with worker(address, "--concurrency", "8", *queue_args):
            while not client.stats("one") or not client.stats("one")[0].workers:
                time.sleep(POLL)
            figures["enqueue, one thread, one call per job (jobs/s)"] = one_thread(client, jobs)
            figures["enqueue, one thread, pipelined (jobs/s)"] = pipelined(client, jobs)
            figures["enqueue, 16 threads sharing one Client (jobs/s)"] = threads(client, jobs)
            plain = run_time(client, watch_jobs, "plain", watch=False)
            watched = run_time(client, watch_jobs, "watched", watch=True)
            figures[f"{watch_jobs:,} jobs run, without watch (jobs/s)"] = watch_jobs / plain
            figures[f"{watch_jobs:,} jobs run, with client.watch (jobs/s)"] = watch_jobs / watched
            figures["watch overhead (%)"] = 100 * (watched / plain - 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5_000, help="jobs per producer row")
    parser.add_argument("--watch-jobs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run(args.jobs, args.watch_jobs) for _ in range(args.repeat)]
    print(f"\njobwire producers, memory provider, worker concurrency 8, {args.repeat} runs\n")
    print(report(runs))


if __name__ == "__main__":
    main()
