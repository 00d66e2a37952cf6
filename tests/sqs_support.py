"""SQS for tests: a moto server over real HTTP, its queues, and per-provider values."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import moto_atomic

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

QUEUES = ("default", "other", "mail")
"""jobwire queue names every test's SQS configuration maps to SQS queues."""
REGION = "us-east-1"
AWS_ENVIRONMENT = {
    # moto accepts any credentials; the standard chain finds these first.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    # No instance-metadata lookups when something is missing.
    "AWS_EC2_METADATA_DISABLED": "true",
}


class MotoServer:
    """moto in server mode on 127.0.0.1: a real SQS endpoint over HTTP, in this process."""

    def __init__(self, port: int = 0) -> None:
        # Imported here: only sessions that run SQS tests pay for loading moto.
        from moto.server import ThreadedMotoServer

        moto_atomic.install()

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        host, self.port = self._server.get_host_and_port()
        self.url = f"http://{host}:{self.port}"

    def reset(self) -> None:
        """Forget every queue and message."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200

    def stop(self) -> None:
        self._server.stop()


@contextmanager
def moto_process(port: int | None = None) -> Iterator[str]:
    """Run ``moto_server`` as a process (so it can be killed like a real outage); yield its URL."""
    port = port or free_port()
    with subprocess.Popen(
        moto_command(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=os.environ.copy(),
    ) as process:
        try:
            wait_listening(port)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.kill()
            process.wait(10)


def moto_command(port: int) -> list[str]:
    """The command line of a moto server on 127.0.0.1:``port``."""
    script = str(Path(moto_atomic.__file__))
    return [sys.executable, script, "-H", "127.0.0.1", "-p", str(port)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@dataclass(frozen=True)
class SqsQueues:
    """Queues created for one test, and the provider settings that use them."""

    endpoint: str
    urls: dict[str, str]
    dead_letter_queue_url: str

    def provider_settings(self, **overrides: Any) -> dict[str, Any]:
        return {
            "type": "sqs",
            "region": REGION,
            "endpoint_url": self.endpoint,
            "queue_urls": self.urls,
            "dead_letter_queue_url": self.dead_letter_queue_url,
            **overrides,
        }


async def create_queues(endpoint: str, names: tuple[str, ...] = QUEUES) -> SqsQueues:
    """Create one SQS queue per jobwire queue name, and a dead-letter queue."""
    async with sqs_client(endpoint) as client:
        urls = {
            name: (await client.create_queue(QueueName=f"jobwire-{name}"))["QueueUrl"]
            for name in names
        }
        dlq = (await client.create_queue(QueueName="jobwire-dead"))["QueueUrl"]
    return SqsQueues(endpoint, urls, dlq)


def sqs_client(endpoint: str) -> ClientCreatorContext[SQSClient]:
    """An aiobotocore SQS client on ``endpoint``, for ``async with``."""
    from aiobotocore.session import get_session

    return get_session().create_client("sqs", region_name=REGION, endpoint_url=endpoint)


async def queue_counts(endpoint: str, url: str) -> dict[str, int]:
    """SQS's approximate counts of a queue (exact on moto)."""
    names: list[QueueAttributeNameType] = ["All"]
    async with sqs_client(endpoint) as client:
        response = await client.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    attributes = response["Attributes"]
    return {
        name: int(attributes[name])
        for name in (
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        )
    }
