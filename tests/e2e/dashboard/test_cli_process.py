"""The ``jobwire-dashboard`` command as its own process against a real gateway."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobwire.gateway import EmbeddedGateway

from dashboard_support import wait_until
from timing import FRAME_TIMEOUT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def command() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(FRAME_TIMEOUT)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_serves_the_overview_and_stops_on_sigterm(
    embedded_gateway: EmbeddedGateway, command: list[subprocess.Popen[str]]
) -> None:
    embedded_gateway.call(_enqueue(embedded_gateway.address))
    port = free_port()
    script = Path(sys.executable).with_name("jobwire-dashboard")
    process = subprocess.Popen(
        [str(script), "--gateway", embedded_gateway.address, "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    command.append(process)
    url = f"http://127.0.0.1:{port}/"
    wait_until(lambda: answers(url) or process.poll() is not None)
    with urllib.request.urlopen(url, timeout=FRAME_TIMEOUT) as response:
        assert 'data-queue="cli"' in response.read().decode()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=FRAME_TIMEOUT)
    # uvicorn stops gracefully, then re-raises the signal it caught (the Unix convention).
    assert process.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
    assert out.startswith(f"jobwire-dashboard 0.1.0: http://127.0.0.1:{port}/")


async def _enqueue(address: str) -> None:
    from jobwire.client import AsyncClient

    async with AsyncClient(address) as client:
        await client.enqueue("report:build", {}, queue="cli")
