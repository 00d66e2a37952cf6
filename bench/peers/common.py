"""The workload every peer runs, the same as ``bench/core.py`` runs on jobwire.

A peer module provides a :class:`Peer`: how to start its worker process
(concurrency 8 where the library has it), how to enqueue one no-op job and how
to read what the handlers recorded. The handlers record, where the producer
can read it (a Redis counter and list, or a PostgreSQL row):

- a counter of finished no-op jobs, and the start time (``time.time()``) of
  the handler that made it 1, polled every 10 ms for completion;
- the start time of each ``stamp`` job, for enqueue → handler-start latency.

One run, for every peer:

1. enqueue: ``jobs`` no-op jobs, one enqueue call at a time, no worker running;
2. end-to-end (a): the worker starts and drains them; timed from the first
   handler start to the last completion (jobwire: from the instant all jobs
   fall due);
3. latency: one ``stamp`` job at a time on the now idle worker, ``samples``
   times, from just before the enqueue call to the handler's start; each
   sample waits :data:`IDLE_GAP` after the previous start, so that the
   worker has finished that job and is idle again (jobwire's loop waits for
   each stamp job's completion);
4. end-to-end (b): ``jobs`` no-op jobs enqueued while the worker runs; timed
   from the first enqueue call to the last completion;
5. peak RSS (VmHWM) of the worker's processes, and of the broker where it is
   a local process (redis-server, its peak reset before the run).
"""

from __future__ import annotations

import abc
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from processes import BENCH, _env, peak_rss_mib

POLL = 0.01  # as bench/measures.py: completion is polled every 10 ms
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
POSTGRES_DATABASE = os.environ.get("BENCH_POSTGRES_DATABASE", "jobwire_bench_procrastinate")
CONCURRENCY = 8
IDLE_GAP = 0.05
"""Seconds between a stamp handler's start and the next sample's enqueue.

Without it the next stamp was enqueued the instant the previous handler
started, while the worker was still busy with that job: procrastinate's
worker is then looking for its next job, and it clears its new-job event
when that look ends (``Worker._new_job_event``, procrastinate 3.10), so a
``NOTIFY`` that arrived during the look is lost and the job waits for the 5 s
``fetch_job_polling_interval`` (bench/README.md, "How each peer is
configured"). 50 ms is far more than any peer needs, on an idle machine, to
finish a no-op job and its next look.
"""


def script(name: str) -> str:
    """A console script of the running environment (the bench env's ``bin/``)."""
    import sys

    return str(Path(sys.executable).parent / name)


class Peer(abc.ABC):
    """One Python job queue, driven through its own client and worker."""

    name: str
    backend: str

    @abc.abstractmethod
    def worker_command(self) -> list[str]:
        """The worker process, at concurrency 8 where the library has it."""

    def worker_env(self) -> dict[str, str]:
        return {}

    async def open(self) -> None:  # noqa: B027 (optional hook)
        """Connect, and clear what an earlier run left behind."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Disconnect."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Empty the queue and the handlers' records."""

    @abc.abstractmethod
    async def enqueue_noop(self) -> None:
        """Enqueue one no-op job."""

    @abc.abstractmethod
    async def done(self) -> tuple[int, float | None]:
        """No-op jobs finished, and when the first of them started (``time.time()``)."""

    @abc.abstractmethod
    async def stamp(self) -> float:
        """Enqueue one ``stamp`` job; return when its handler started (``time.time()``)."""

    def broker_pid(self) -> int | None:
        """The broker's process on this machine, if its RSS is measurable."""
        return None


@contextmanager
def worker_process(peer: Peer) -> Iterator[subprocess.Popen[bytes]]:
    """Run the peer's worker; stop it however the run ends."""
    env = {**_env(), **peer.worker_env()}
    with (
        tempfile.TemporaryFile() as log,
        subprocess.Popen(
            peer.worker_command(), env=env, cwd=BENCH, stdout=log, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def tree_peak_rss_mib(pid: int) -> float:
    """VmHWM of a process and its children (Dramatiq forks its workers), in MiB."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        pids.extend(int(child) for child in children)
    return sum(peak_rss_mib(each) for each in pids)


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM (needs permission to write its clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def wait_done(
    peer: Peer, process: subprocess.Popen[bytes], count: int, within: float
) -> tuple[float, float | None]:
    """Wait until ``count`` no-op jobs finished; return then and the first start (time.time())."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{peer.name}: worker exited with {process.returncode}")
        finished, first = await peer.done()
        if finished >= count:
            return time.time(), first
        await asyncio.sleep(POLL)
    raise TimeoutError(f"{peer.name}: {count} jobs did not finish within {within}s")


async def one_run(peer: Peer, jobs: int, samples: int) -> dict[str, float]:
    """One run of the workload; figures keyed as in bench/core.py."""
    figures: dict[str, float] = {}
    await peer.reset()
    broker = peer.broker_pid()
    if broker is not None and not reset_peak_rss(broker):
        broker = None

    start = time.perf_counter()
    for _ in range(jobs):
        await peer.enqueue_noop()
    figures["enqueue, one call per job (jobs/s)"] = jobs / (time.perf_counter() - start)

    with worker_process(peer) as process:
        end, first = await wait_done(peer, process, jobs, within=600)
        assert first is not None
        figures["end-to-end (a) queued then drained (jobs/s)"] = jobs / (end - first)

        values = []
        for _ in range(samples):
            await asyncio.sleep(IDLE_GAP)
            sent = time.time()
            started = await peer.stamp()
            values.append((started - sent) * 1000)
        figures["enqueue→start latency p50 (ms)"] = statistics.median(values)
        figures["enqueue→start latency p99 (ms)"] = statistics.quantiles(values, n=100)[98]

        await peer.reset()
        start_wall = time.time()
        for _ in range(jobs):
            await peer.enqueue_noop()
        end, _ = await wait_done(peer, process, jobs, within=600)
        figures["end-to-end (b) enqueued while running (jobs/s)"] = jobs / (end - start_wall)
        figures["peak RSS worker (MiB)"] = tree_peak_rss_mib(process.pid)
    figures["peak RSS broker (MiB)"] = peak_rss_mib(broker) if broker else float("nan")
    return figures
