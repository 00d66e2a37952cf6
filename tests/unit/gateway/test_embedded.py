from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from jobwire.gateway import EmbeddedGateway
from jobwire.v1 import queue_service_pb2, queue_service_pb2_grpc


def test_default_embedded_gateway_needs_nothing_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with EmbeddedGateway() as embedded:
        host, _, port = embedded.address.rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
        with grpc.insecure_channel(embedded.address) as channel:
            stub = queue_service_pb2_grpc.QueueServiceStub(channel)
            reply = stub.EnqueueJob(queue_service_pb2.EnqueueJobRequest(type="t"), timeout=5)
            assert reply.job.id
        database = embedded.settings.scheduler.database_url.removeprefix("sqlite+aiosqlite:///")
        assert Path(database).exists()
    assert not Path(database).parent.exists()
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError, match="not running"):
        _ = embedded.address
