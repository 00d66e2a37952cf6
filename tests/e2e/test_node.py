"""Jobs cross languages both ways: the Node.js examples against Python SDKs."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from jobwire.client import Client, JobDeadError
from jobwire.gateway import EmbeddedGateway
from jobwire.worker import HandlerRegistry, JobContext, Worker

from node_tools import NODE_EXAMPLES, npm_ci


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    npm_ci(NODE_EXAMPLES)


@pytest.fixture
def python_worker(embedded_gateway: EmbeddedGateway) -> Iterator[Worker]:
    registry = HandlerRegistry()

    @registry.handler("text:reverse")
    def reverse(ctx: JobContext) -> dict[str, str]:
        return {"reversed": ctx.payload["text"][::-1], "by": "python"}

    worker = Worker(
        embedded_gateway.address, registry=registry, queues=["to-python"], worker_id="py-1"
    )
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def test_python_producer_node_worker(embedded_gateway: EmbeddedGateway) -> None:
    command = ["node", "worker.js", "--gateway", embedded_gateway.address, "--queue", "to-node"]
    with subprocess.Popen(
        [*command, "--worker-id", "node-1", "--max-jobs", "3"],
        cwd=NODE_EXAMPLES,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as node:
        try:
            with Client(embedded_gateway.address) as client:
                add = client.enqueue("math:add", {"a": 2, "b": 40}, queue="to-node")
                shout = client.enqueue("text:shout", {"text": "hi"}, queue="to-node")
                empty = client.enqueue("text:shout", {"text": ""}, queue="to-node")
                assert add.wait(timeout=20) == {"sum": 42}
                assert shout.wait(timeout=20) == "HI!"
                with pytest.raises(JobDeadError) as dead:
                    empty.wait(timeout=20)
                assert dead.value.last_error is not None
                assert dead.value.last_error.message == "nothing to shout"
                assert client.get_job(add.id).worker_id == "node-1"
            # --max-jobs 3: the worker drains and closes its stream by itself.
            out, err = node.communicate(timeout=20)
        finally:
            if node.poll() is None:
                node.kill()
                node.wait(10)
    assert node.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert events[0]["event"] == "opened"
    assert sorted(e["event"] for e in events[1:-1]) == ["completed", "completed", "failed"]
    assert events[-1] == {"worker_id": "node-1", "event": "closed", "finished": 3}


@pytest.mark.usefixtures("python_worker")
def test_node_producer_python_worker(embedded_gateway: EmbeddedGateway) -> None:
    command = ["node", "producer.js", "--gateway", embedded_gateway.address, "--queue", "to-python"]
    result = subprocess.run(
        [*command, "--type", "text:reverse", '{"text": "abc"}', '{"text": "jobwire"}'],
        cwd=NODE_EXAMPLES,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(j["state"], j["worker_id"], j["result"]) for j in lines] == [
        ("STATE_COMPLETED", "py-1", {"reversed": "cba", "by": "python"}),
        ("STATE_COMPLETED", "py-1", {"reversed": "eriwboj", "by": "python"}),
    ]
