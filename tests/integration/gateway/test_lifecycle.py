"""Start-up, health, reflection, graceful shutdown and the CLI process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from jobwire.v1 import queue_service_pb2

from conftest import GatewayFactory
from support import Producer, RawWorker, State
from timing import FRAME_TIMEOUT


async def test_health_and_reflection(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "jobwire.v1.QueueService", "jobwire.v1.WorkerService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request])):
        names = {s.name for s in reply.list_services_response.service}
    assert {"jobwire.v1.QueueService", "jobwire.v1.WorkerService"} <= names


async def test_stop_drains_workers_and_waits_for_their_acks(
    gateway_factory: GatewayFactory,
) -> None:
    gateway = await gateway_factory()
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        producer = Producer(channel)
        job = await producer.enqueue()
        worker = await RawWorker(channel).open()
        [item] = await worker.jobs(1)
        # Watched from before the stop: a watch opened during it could reach the
        # gateway after its drain and be cut when the server stops.
        watch = aiter(producer.stub.WatchJob(queue_service_pb2.WatchJobRequest(id=job.id)))
        assert (await anext(watch)).job.state == State.STATE_PROCESSING
        stopping = asyncio.create_task(gateway.stop(grace=10))
        drain = (await worker.expect("drain")).drain
        assert drain.grace_period.seconds == 10
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        # New sessions are refused while draining; the old one still acks.
        # Refused on arrival, so nothing is written to it (a write can race the
        # refusal and fail in gRPC core instead: grpc/grpc#36066).
        late = RawWorker(channel, worker_id="late")
        assert await late.call.code() == grpc.StatusCode.UNAVAILABLE
        await worker.ack(item.lease_id)
        async with asyncio.timeout(FRAME_TIMEOUT):
            while (update := await anext(watch)).job.state != State.STATE_COMPLETED:
                assert update.job.state == State.STATE_PROCESSING
        await asyncio.wait_for(stopping, 5)  # well before the 10 s grace


@pytest.fixture
async def gateway_process(tmp_path: Path) -> AsyncIterator[tuple[subprocess.Popen[str], str]]:
    """``python -m jobwire.gateway`` on a free port; killed if the test leaves it running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWIRE_")}
    command = [sys.executable, "-m", "jobwire.gateway", "--listen", "127.0.0.1:0"]
    with subprocess.Popen(
        [*command, "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    ) as process:
        try:
            assert process.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 20)
            assert "listening on" in line, line
            yield process, line.split()[-1]
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


async def test_sigterm_drains_then_exits(
    gateway_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, address = gateway_process
    async with grpc.aio.insecure_channel(address) as channel:
        producer = Producer(channel)
        job = await producer.enqueue()
        worker = await RawWorker(channel).open()
        [item] = await worker.jobs(1)
        # Watch from before the signal: the gateway exits as soon as the ack lands.
        completed = asyncio.create_task(producer.wait_state(job.id, State.STATE_COMPLETED))
        await asyncio.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        await worker.expect("drain", timeout=10)
        await worker.ack(item.lease_id)
        assert (await worker.result()).ok
        assert (await completed).state == State.STATE_COMPLETED
    assert await asyncio.to_thread(process.wait, 20) == 0


def test_invalid_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:0"\nlease_duraton = 5\n')
    result = subprocess.run(
        [sys.executable, "-m", "jobwire.gateway", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "server.lease_duraton: unknown key" in result.stderr


def test_start_failure_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text(
        '[server]\nlisten = "127.0.0.1:0"\n'
        '[worker]\nmode = "in-process"\nhandlers = ["no_such_module:registry"]\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "jobwire.gateway", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "jobwire-gateway: cannot start:" in result.stderr
    assert "no_such_module" in result.stderr
    assert "Traceback" not in result.stderr
