"""The SQLite provider as gateway processes: one gateway per file, restarts lose nothing."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from jobwire.v1 import queue_service_pb2

from support import Producer, RawWorker, State, seconds

Q = queue_service_pb2


class Gateways:
    """``jobwire-gateway`` processes on one SQLite queue file; all killed at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.processes: list[subprocess.Popen[str]] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
        self.env["JOBWIRE_PROVIDER__TYPE"] = "sqlite"
        self.env["JOBWIRE_PROVIDER__DATABASE_URL"] = f"sqlite+aiosqlite:///{directory}/queue.db"
        self.env["JOBWIRE_SCHEDULER__DATABASE_URL"] = f"sqlite+aiosqlite:///{directory}/sched.db"

    def start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobwire.gateway", "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.directory,
        )
        self.processes.append(process)
        return process

    def address(self, process: subprocess.Popen[str]) -> str:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        return line.split()[-1]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate(timeout=10)


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Gateways]:
    started = Gateways(tmp_path)
    try:
        yield started
    finally:
        started.close()


def test_a_second_gateway_on_the_same_file_refuses_to_start(gateways: Gateways) -> None:
    first = gateways.start()
    gateways.address(first)
    second = gateways.start()
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 1
    [line] = stderr.strip().splitlines()
    assert line.startswith("jobwire-gateway: cannot start: the SQLite queue file")
    assert "is in use by another gateway" in line
    assert f"pid {first.pid}" in line
    assert first.poll() is None  # the first one serves on
    with sqlite3.connect(gateways.directory / "queue.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_a_gateway_killed_and_restarted_on_the_file_has_every_job(
    gateways: Gateways,
) -> None:
    first = gateways.start()
    async with grpc.aio.insecure_channel(gateways.address(first)) as channel:
        producer = Producer(channel)
        later = await producer.enqueue(delay=seconds(3600))
        leased = await producer.enqueue(max_retries=5)
        waiting = await producer.enqueue(type="other")
        worker = await RawWorker(channel, job_types=["t"]).open()
        [item] = await worker.jobs(1)
        assert item.job.id == leased.id
        await producer.stub.PauseQueue(Q.PauseQueueRequest(queue="mail"))
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        worker.drop()
    second = gateways.start()
    async with grpc.aio.insecure_channel(gateways.address(second)) as channel:
        producer = Producer(channel)
        assert (await producer.get(later.id)).state == State.STATE_SCHEDULED
        assert (await producer.get(waiting.id)).state == State.STATE_PENDING
        [mail] = (await producer.stub.GetQueueStats(Q.GetQueueStatsRequest(queue="mail"))).queues
        assert mail.paused
        # Leased at the kill: released at once by the restarted gateway, attempt counted.
        again = await producer.get(leased.id)
        assert (again.state, again.attempt, again.last_error.type) == (
            State.STATE_PENDING,
            1,
            "GATEWAY_LOST",
        )
        worker = await RawWorker(channel, job_types=["t"]).open()
        [item] = await worker.jobs(1)
        assert (item.job.id, item.attempt) == (leased.id, 2)
        worker.drop()
