"""The ``jobwire-worker`` command as a separate OS process against a real gateway."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from jobwire.gateway import Gateway

from support import Producer, State

ROOT = Path(__file__).resolve().parents[3]
APP = "tests.e2e.worker.app:registry"
JSON = "application/json"

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[Spawn]:
    """Start ``python -m jobwire.worker ARGS`` processes; each is killed after the test."""
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(*args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(processes)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "jobwire.worker", *args],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def wait_for_file(path: Path, process: subprocess.Popen[bytes], timeout: float = 30) -> str:
    """Wait until the worker wrote ``path``; the worker must stay alive meanwhile."""
    async with asyncio.timeout(timeout):
        while True:
            text = await asyncio.to_thread(_read, path)
            if text:
                return text
            assert process.poll() is None, f"worker exited with {process.returncode}"
            await asyncio.sleep(0.02)


async def wait_for_exit(process: subprocess.Popen[bytes], timeout: float = 30) -> int:
    # Polling, not process.wait(): the gateway shares this event loop.
    async with asyncio.timeout(timeout):
        while True:
            code = process.poll()
            if code is not None:
                return code
            await asyncio.sleep(0.02)


def payload(**fields: object) -> bytes:
    return json.dumps(fields).encode()


async def test_job_of_a_killed_worker_completes_on_another(
    gateway: Gateway, producer: Producer, spawn_worker: Spawn, tmp_path: Path
) -> None:
    marker = tmp_path / "attempt-1"
    job = await producer.enqueue(
        "e2e:slow", payload(marker=str(marker), sleep=60), content_type=JSON
    )
    first = spawn_worker(APP, "--gateway", gateway.address, "--worker-id", "first")
    assert await wait_for_file(marker, first) == str(first.pid)

    first.send_signal(signal.SIGKILL)
    assert await wait_for_exit(first) == -signal.SIGKILL
    second = spawn_worker(APP, "--gateway", gateway.address, "--worker-id", "second")

    done = await producer.wait_state(job.id, State.STATE_COMPLETED, timeout=30)
    assert done.attempt == 2
    assert done.worker_id == "second"
    assert json.loads(done.result) == {"attempt": 2, "pid": second.pid}
    assert done.last_error.type == "WORKER_LOST"


async def test_sigterm_finishes_the_running_job_then_exits(
    gateway: Gateway, producer: Producer, spawn_worker: Spawn, tmp_path: Path
) -> None:
    marker = tmp_path / "attempt-1"
    job = await producer.enqueue(
        "e2e:slow", payload(marker=str(marker), sleep=0.5), content_type=JSON
    )
    worker = spawn_worker(APP, "--gateway", gateway.address, "--concurrency", "2")
    await wait_for_file(marker, worker)

    worker.send_signal(signal.SIGTERM)
    assert await wait_for_exit(worker) == 0
    done = await producer.get(job.id)
    assert done.state == State.STATE_COMPLETED
    assert (done.attempt, json.loads(done.result)["pid"]) == (1, worker.pid)


async def test_second_signal_stops_at_once(
    gateway: Gateway, producer: Producer, spawn_worker: Spawn, tmp_path: Path
) -> None:
    marker = tmp_path / "attempt-1"
    job = await producer.enqueue(
        "e2e:slow", payload(marker=str(marker), sleep=60), content_type=JSON
    )
    worker = spawn_worker(APP, "--gateway", gateway.address, "--shutdown-timeout", "60")
    await wait_for_file(marker, worker)

    worker.send_signal(signal.SIGINT)
    await asyncio.sleep(0.2)
    assert worker.poll() is None  # still finishing the job gracefully
    worker.send_signal(signal.SIGINT)
    assert await wait_for_exit(worker) == 0
    released = await producer.get(job.id)
    assert (released.state, released.attempt) == (State.STATE_PENDING, 1)


async def test_shutdown_does_not_wait_for_stuck_sync_handlers(
    gateway: Gateway, producer: Producer, spawn_worker: Spawn, tmp_path: Path
) -> None:
    marker = tmp_path / "stuck"
    job = await producer.enqueue(
        "e2e:stuck", payload(marker=str(marker), sleep=120), content_type=JSON
    )
    worker = spawn_worker(APP, "--gateway", gateway.address, "--shutdown-timeout", "0.2")
    await wait_for_file(marker, worker)

    worker.send_signal(signal.SIGTERM)
    # The thread sleeps on; the process must not wait for it at exit.
    assert await wait_for_exit(worker, timeout=30) == 0
    released = await producer.get(job.id)
    assert (released.state, released.attempt) == (State.STATE_PENDING, 1)


async def test_json_logs_queues_and_job_types(
    gateway: Gateway, producer: Producer, spawn_worker: Spawn, tmp_path: Path
) -> None:
    worker = spawn_worker(
        APP,
        "--gateway",
        gateway.address,
        "--queue",
        "q1",
        "--queue",
        "q2",
        "--job-type",
        "e2e:echo",
        "--json-logs",
        "--log-level",
        "debug",
    )
    first = await producer.enqueue("e2e:echo", b'{"n": 1}', content_type=JSON, queue="q2")
    done = await producer.wait_state(first.id, State.STATE_COMPLETED, timeout=30)
    assert done.result == b'{"n":1}'
    worker.send_signal(signal.SIGTERM)
    assert await wait_for_exit(worker) == 0
    lines = [json.loads(line) for line in (tmp_path / "worker-0.log").read_text().splitlines()]
    assert any(
        line["logger"] == "jobwire.worker" and line["message"].startswith("connected to")
        for line in lines
    )


def test_target_that_is_not_a_registry_exits_2() -> None:
    for target, message in [
        (
            "tests.e2e.worker.app:not_a_registry",
            "is not a jobwire.worker.HandlerRegistry (got object)",
        ),
        ("tests.e2e.worker.no_such_module:registry", "cannot import module"),
        ("tests.e2e.worker.app:missing", "has no attribute 'missing'"),
    ]:
        result = subprocess.run(
            [sys.executable, "-m", "jobwire.worker", target],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("jobwire-worker")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("jobwire-worker ")


def test_unreachable_gateway_is_retried_not_fatal(spawn_worker: Spawn, tmp_path: Path) -> None:
    worker = spawn_worker(APP, "--gateway", "127.0.0.1:1")
    log = tmp_path / "worker-0.log"
    deadline = time.monotonic() + 30
    # Failed, and still running: then SIGTERM, once its handler is surely installed.
    while "no gateway answers at 127.0.0.1:1" not in _read(log):
        assert worker.poll() is None, _read(log)
        assert time.monotonic() < deadline, _read(log)
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


def test_an_unreachable_gateway_is_named_once_then_retried_quietly(
    spawn_worker: Spawn, tmp_path: Path
) -> None:
    worker = spawn_worker(APP, "--gateway", "127.0.0.1:1", "--log-level", "DEBUG")
    log = tmp_path / "worker-0.log"
    deadline = time.monotonic() + 60
    while _read(log).count("reconnecting to 127.0.0.1:1") < 4:
        assert worker.poll() is None, _read(log)
        assert time.monotonic() < deadline, _read(log)
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    text = _read(log)
    [said] = [line for line in text.splitlines() if "no gateway answers" in line]
    assert "WARNING" in said
    assert "start one with `jobwire-gateway`" in said
    assert "--gateway HOST:PORT" in said
    # Every retry after that is DEBUG: nothing else at WARNING or above.
    loud = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line]
    assert loud == [said], loud
