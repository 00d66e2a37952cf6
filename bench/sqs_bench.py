"""jobwire on the SQS provider against moto server, next to raw aiobotocore on the same server.

Processes on 127.0.0.1: a moto server (SQS over HTTP), one gateway
(``provider.type = "sqs"``, job records in SQLite) and one worker process
(``python -m jobwire.worker``, concurrency 8), fed by ``AsyncClient``.

- raw aiobotocore (the ceiling): messages sent with ``SendMessageBatch`` and
  received, then deleted with ``DeleteMessageBatch``, by concurrent loops in
  this process, as fast as the moto server allows; messages/s end to end;
- end-to-end through the gateway: no-op jobs enqueued by concurrent producers
  while the worker runs; jobs/s from the first enqueue to the last completion;
- latency: enqueue → handler start on an idle worker, one job at a time.

The ratio gateway/raw is the figure to watch (target: at least 50%). Each
figure is the median of ``--repeat`` runs, with the spread. Run::

    python bench/sqs_bench.py --jobs 1000 --samples 200 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from aiobotocore.session import get_session

from jobwire.client import AsyncClient

import core
from measures import flowing_rate, latency, report, wait_worker
from processes import gateway, worker

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import (
        DeleteMessageBatchRequestEntryTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
}
CHUNK = 100  # jobs enqueued at once: producers wait for each chunk, raw and gateway alike
# Receive loops of the raw run: as many receive calls as the gateway keeps in
# flight for the worker's credits (32 by default, so 4 calls of up to 10).
RAW_RECEIVERS = 4
# About the size of a no-op job's message: the raw loops move the same bytes.
RAW_BODY = "x" * 330


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server process on a free port; yields its URL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
        try:
            deadline = time.monotonic() + 30
            while True:
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("moto server did not start")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(10)


async def create_queue(endpoint: str, name: str) -> str:
    async with get_session().create_client("sqs", region_name=REGION, endpoint_url=endpoint) as sqs:
        return (await sqs.create_queue(QueueName=name))["QueueUrl"]


async def raw_rate(endpoint: str, messages: int) -> float:
    """Send, receive and delete ``messages`` with aiobotocore alone; messages/s."""
    url = await create_queue(endpoint, f"raw-{time.monotonic_ns()}")
    async with get_session().create_client("sqs", region_name=REGION, endpoint_url=endpoint) as sqs:
        done = 0

        async def send_batch(count: int) -> None:
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "MessageBody": RAW_BODY} for i in range(count)
            ]
            await sqs.send_message_batch(QueueUrl=url, Entries=entries)

        async def send() -> None:
            for offset in range(0, messages, CHUNK):
                chunk = min(CHUNK, messages - offset)
                await asyncio.gather(*(send_batch(min(10, chunk - i)) for i in range(0, chunk, 10)))

        async def receive() -> None:
            nonlocal done
            while done < messages:
                response = await sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                )
                received = response.get("Messages", [])
                if received:
                    entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                        for i, m in enumerate(received)
                    ]
                    await sqs.delete_message_batch(QueueUrl=url, Entries=entries)
                    done += len(received)

        start = time.perf_counter()
        await asyncio.gather(send(), *(receive() for _ in range(RAW_RECEIVERS)))
        return messages / (time.perf_counter() - start)


def gateway_config(directory: Path, endpoint: str, urls: dict[str, str]) -> Path:
    config = directory / "jobwire.toml"
    queue_urls = "".join(f'{name} = "{url}"\n' for name, url in urls.items())
    config.write_text(
        "[provider]\n"
        'type = "sqs"\n'
        f'region = "{REGION}"\n'
        f'endpoint_url = "{endpoint}"\n'
        "[provider.queue_urls]\n"
        f"{queue_urls}"
        "[scheduler]\n"
        f'database_url = "sqlite+aiosqlite:///{directory}/jobwire.db"\n'
    )
    return config


async def one_run(jobs: int, samples: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as scratch:
        figures["raw aiobotocore send+receive+delete (msgs/s)"] = await raw_rate(endpoint, jobs)
        names = ("default", "flow", "latency")
        urls = {name: await create_queue(endpoint, f"jobwire-{name}") for name in names}
        config = gateway_config(Path(scratch), endpoint, urls)
        with gateway("--config", str(config)) as (_, address):
            async with AsyncClient(address) as client:
                queue_args = [arg for queue in ("flow", "latency") for arg in ("--queue", queue)]
                with worker(address, "--concurrency", "8", *queue_args):
                    await wait_worker(client, "latency")
                    p50, p99 = await latency(client, samples)
                    figures["enqueue→start latency p50 (ms)"] = p50
                    figures["enqueue→start latency p99 (ms)"] = p99
                    rate = await flowing_rate(client, jobs, chunk=CHUNK, within=300)
                    figures["end-to-end through the gateway (jobs/s)"] = rate
    figures["gateway / raw (%)"] = (
        100
        * figures["end-to-end through the gateway (jobs/s)"]
        / figures["raw aiobotocore send+receive+delete (msgs/s)"]
    )
    return figures


async def core_run(jobs: int, samples: int) -> dict[str, float]:
    """``core``'s whole workload on the SQS provider, on a moto server of its own."""
    os.environ.update(CREDENTIALS)
    with moto_server() as endpoint, tempfile.TemporaryDirectory() as scratch:
        names = ("default", *core.QUEUES)  # the gateway insists on a default queue
        urls = {name: await create_queue(endpoint, f"jobwire-{name}") for name in names}
        config = gateway_config(Path(scratch), endpoint, urls)
        # moto slows down as its queues fill, and the worker's calls compete
        # with the enqueues: smaller chunks in (b) and a generous deadline.
        return await core.one_run(
            jobs, samples, "--config", str(config), chunk=CHUNK, call_timeout=120.0
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200, help="latency samples")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # moto takes any credentials; the gateway finds these through the standard chain.
    os.environ.update(CREDENTIALS)
    runs = [asyncio.run(one_run(args.jobs, args.samples)) for _ in range(args.repeat)]
    title = f"jobwire, SQS provider on moto server, {args.jobs:,} no-op jobs, worker concurrency 8"
    print(f"\n{title}, {args.repeat} runs\n")
    print(report(runs))


if __name__ == "__main__":
    main()
