"""The blocking client inside a running event loop (as in IPython) and in a plain script."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobwire.client import AsyncClient, Client, JobRequest, JobState
from jobwire.gateway import EmbeddedGateway, embedded
from jobwire.worker import HandlerRegistry, JobContext, Worker

registry = HandlerRegistry()


@registry.handler("square")
def square(ctx: JobContext) -> int:
    return int(ctx.payload) ** 2


@pytest.fixture
def worker(embedded_gateway: EmbeddedGateway) -> Iterator[Worker]:
    running = Worker(embedded_gateway.address, registry=registry)
    running.start()
    yield running
    running.stop(10)


async def test_sync_client_inside_a_running_loop(
    embedded_gateway: EmbeddedGateway, worker: Worker
) -> None:
    # A Jupyter cell runs on the kernel's loop; blocking calls must not touch it
    # (asyncio.run or run_until_complete would raise "loop is already running").
    loop = asyncio.get_running_loop()
    with Client.connect(embedded_gateway.address) as client:
        job = client.enqueue("square", 7)
        assert job.wait(timeout=10) == 49
        jobs = client.enqueue_many([JobRequest("square", n) for n in range(10)])
        done = client.watch(jobs)
        assert {job.state for job in done} == {JobState.COMPLETED}
        assert len(client.jobs(type="square")) == 11
        [stats] = client.stats()
        assert stats.completed == 11
    assert asyncio.get_running_loop() is loop
    assert loop.is_running()


async def test_both_clients_share_a_loop_with_a_worker_started_from_it(
    embedded_gateway: EmbeddedGateway,
) -> None:
    # A notebook starts the worker from a cell: start() returns at once.
    worker = Worker(embedded_gateway.address, registry=registry)
    worker.start()
    try:
        async with await AsyncClient.connect(embedded_gateway.address) as client:
            jobs = await asyncio.gather(*(client.enqueue("square", n) for n in range(5)))
            assert await jobs[4].wait(timeout=10) == 16
            done = await client.watch(jobs)
            assert {job.state for job in done} == {JobState.COMPLETED}
    finally:
        worker.stop(10)


def test_embedded_starts_a_gateway_that_stops_cleanly() -> None:
    gateway = embedded()
    try:
        assert repr(gateway) == f"<EmbeddedGateway {gateway.address} (memory provider)>"
        with Client.connect(gateway.address) as client:
            assert client.stats() == []
    finally:
        gateway.stop()
    assert repr(gateway) == "<EmbeddedGateway (stopped)>"


SCRIPT = """
from jobwire.client import Client, JobRequest
from jobwire.gateway import embedded
from jobwire.worker import HandlerRegistry, JobContext, Worker

registry = HandlerRegistry()


@registry.handler("square")
def square(ctx: JobContext) -> int:
    ctx.progress(1, 1, "squared")
    return ctx.payload * ctx.payload


gateway = embedded()
worker = Worker(gateway.address, registry=registry)
worker.start()
with Client.connect(gateway.address) as client:
    jobs = client.enqueue_many([JobRequest("square", n) for n in range(20)])
    print(client.watch(jobs, desc="squares"))
    print(jobs[3].wait(timeout=10))
worker.stop()
gateway.stop()
"""


def test_plain_script_with_an_embedded_gateway(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "JobList(20 jobs: 20 completed)\n9\n"
    # tqdm.auto draws text on stderr outside Jupyter.
    final = result.stderr.replace("\r", "\n").splitlines()[-1].rstrip()
    assert final.startswith("squares: 100%|██████████|")
    assert final.endswith("20/20 done: 20 completed")
    assert [path.name for path in tmp_path.iterdir()] == ["script.py"]  # nothing left behind
