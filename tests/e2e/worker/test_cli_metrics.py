"""Worker SDK metrics, served by ``jobwire-worker --metrics-listen``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from jobwire.client import Client
from jobwire.gateway import EmbeddedGateway

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_worker_cli_serves_its_metrics(embedded_gateway: EmbeddedGateway, tmp_path: Path) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "jobwire.worker", "tests.e2e.worker.app:registry"]
    with (
        (tmp_path / "worker.log").open("wb") as log,
        subprocess.Popen(
            [*command, "--gateway", embedded_gateway.address, "--metrics-listen", metrics],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        ) as worker,
    ):
        try:
            with Client(embedded_gateway.address) as client:
                assert client.enqueue("e2e:echo", {"n": 1}, queue="default").wait(timeout=20)
            key = "jobwire_worker_attempts_total" + str(
                sorted({"outcome": "succeeded", "queue": "default", "type": "e2e:echo"}.items())
            )
            deadline = time.monotonic() + 10
            while (samples := scrape(metrics)).get(key) != 1.0:
                assert time.monotonic() < deadline, samples
                time.sleep(0.05)
            assert samples["jobwire_worker_running[]"] == 0
            duration = "jobwire_worker_handler_duration_seconds_count"
            assert samples[f"{duration}[('queue', 'default'), ('type', 'e2e:echo')]"] == 1
        finally:
            worker.terminate()
            worker.wait(20)
