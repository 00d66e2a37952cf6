"""``buf curl`` drives the gateway through server reflection alone (no .proto files)."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import pytest

from jobwire.gateway import EmbeddedGateway

from node_tools import ROOT, npm_ci

BUF = ROOT / "node_modules/.bin/buf"


@pytest.fixture(scope="module", autouse=True)
def buf_installed() -> None:
    npm_ci(ROOT)


def buf_curl(address: str, method: str, body: dict[str, Any] | None = None) -> Any:
    # The Python server speaks gRPC over cleartext HTTP/2 only.
    command = [str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge"]
    if body is None:
        command += ["--list-methods", f"http://{address}"]
    else:
        command += ["-d", json.dumps(body), f"http://{address}/{method}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.split() if body is None else json.loads(result.stdout)


def test_enqueue_get_and_stats_with_buf_curl(embedded_gateway: EmbeddedGateway) -> None:
    address = embedded_gateway.address
    methods = buf_curl(address, "")
    assert "jobwire.v1.QueueService/EnqueueJob" in methods
    assert "jobwire.v1.WorkerService/StreamJobs" in methods

    payload = base64.b64encode(b'{"n": 1}').decode()
    enqueued = buf_curl(
        address,
        "jobwire.v1.QueueService/EnqueueJob",
        {"queue": "curl", "type": "demo", "payload": payload, "contentType": "application/json"},
    )
    job_id = enqueued["job"]["id"]
    assert enqueued["job"]["state"] == "STATE_PENDING"

    got = buf_curl(address, "jobwire.v1.QueueService/GetJob", {"id": job_id})
    assert got["job"]["payload"] == payload
    assert got["job"]["type"] == "demo"

    stats = buf_curl(address, "jobwire.v1.QueueService/GetQueueStats", {"queue": "curl"})
    [row] = stats["queues"]
    assert row["queue"] == "curl"
    assert row["pending"] == "1"  # int64 is a JSON string
