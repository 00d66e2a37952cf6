"""The ``jobwire-gateway`` command as an OS process: ports, start errors, stopping."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc

import commands
from support import Producer, RawWorker


async def test_a_second_gateway_on_a_taken_port_refuses_to_start(tmp_path: Path) -> None:
    with commands.gateway(cwd=tmp_path) as (first, address):
        second = await asyncio.to_thread(
            commands.run, "jobwire.gateway", "--listen", address, cwd=tmp_path
        )
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"jobwire-gateway: cannot start: {address} is already in use"
        ]
        # The first one still serves every connection.
        for _ in range(3):
            async with grpc.aio.insecure_channel(address) as channel:
                job = await Producer(channel).enqueue()
                assert (await Producer(channel).get(job.id)).id == job.id
        assert first.popen.poll() is None


async def test_the_scheduler_database_is_named_at_start(tmp_path: Path) -> None:
    with commands.gateway(cwd=tmp_path) as (process, _):
        line = await asyncio.to_thread(process.wait_for, "scheduler database:")
    assert line.endswith(f"scheduler database: {tmp_path / 'jobwire.db'}")


async def test_a_second_ctrl_c_stops_at_once_and_says_what_was_dropped(tmp_path: Path) -> None:
    config = tmp_path / "jobwire.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:0"\nshutdown_grace = "10m"\n')
    with commands.gateway("--config", str(config), cwd=tmp_path) as (process, address):
        async with grpc.aio.insecure_channel(address) as channel:
            producer = Producer(channel)
            for _ in range(3):
                await producer.enqueue()
            worker = await RawWorker(channel, max_in_flight=1).open()
            await worker.jobs(1)  # held, never answered
            process.signal(signal.SIGINT)
            line = await asyncio.to_thread(process.wait_for, "press Ctrl-C again")
            assert "draining 1 jobs" in line
            process.signal(signal.SIGINT)
            # Well before the ten minutes of grace.
            assert await asyncio.to_thread(process.wait, 60) == 0
    assert any("3 unfinished jobs dropped" in line for line in process.stderr), process.stderr
