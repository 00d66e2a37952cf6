"""Gateway cost per job in instructions: a measure the machine's other load cannot skew.

Runs ``jobwire-gateway`` under valgrind's callgrind and drives it with a
scripted client, so the work per job is the same on every run:

- ``stream``: ``EnqueueJobs`` of 500 jobs, and a raw worker stream with 16
  credits that acks each 16 jobs delivered in one frame (per 16 jobs: one
  delivery, one ack, one ack_result);
- ``unary``: one ``EnqueueJob`` call at a time, no worker.

Counting starts after a warm-up (``callgrind_control --zero``) and stops
before the gateway shuts down (``--dump``), so start-up is not counted. It
counts user-space instructions of every gateway thread: the kernel's share
(``sendmsg``, wake-ups) is not in it. Runs repeat within 0.1 % with a fixed
``PYTHONHASHSEED``. Needs valgrind (``apt-get install valgrind``); the gateway
runs about 50 times slower under it, so a run takes a few minutes.

Run: ``python bench/gateway_instructions.py stream`` (or ``unary``; ``--jobs``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from jobwire.v1 import queue_service_pb2 as queue
from jobwire.v1 import queue_service_pb2_grpc as queue_grpc
from jobwire.v1 import worker_service_pb2 as worker
from jobwire.v1 import worker_service_pb2_grpc as worker_grpc

if TYPE_CHECKING:
    from jobwire.v1.queue_service_pb2_grpc import QueueServiceAsyncStub

CREDITS = 16
BATCH = 500
WARM_UP = 160
Request = worker.StreamJobsRequest
Response = worker.StreamJobsResponse


def _request() -> queue.EnqueueJobRequest:
    return queue.EnqueueJobRequest(
        queue="bench", type="noop", payload=b"{}", content_type="application/json"
    )


class Callgrind:
    """A gateway under callgrind, its counters zeroed and dumped on demand."""

    def __init__(self, out: Path) -> None:
        self.out = out
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}/callgrind.out.%p",
            sys.executable,
            "-m",
            "jobwire.gateway",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "WARNING",
        ]
        env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=out, env=env
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"gateway did not start under valgrind: {line!r}")
        self.address = line.split()[-1]

    def control(self, flag: str) -> None:
        subprocess.run(
            ["callgrind_control", flag, str(self.process.pid)], check=True, capture_output=True
        )

    def instructions(self) -> int:
        """Instructions counted between the last zero and the dump (the ``.1`` part)."""
        [dump] = self.out.glob(f"callgrind.out.{self.process.pid}.1")
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in {dump}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(120)


async def _read(call: grpc.aio.StreamStreamCall[Request, Response]) -> Response:
    frame = await call.read()
    assert isinstance(frame, Response), "the gateway ended the stream"
    return frame


async def stream(
    gateway: Callgrind,
    stub: QueueServiceAsyncStub,
    channel: grpc.aio.Channel,
    jobs: int,
    measure: bool,
) -> None:
    call = worker_grpc.WorkerServiceStub(channel).StreamJobs()
    opened = Request.Open(worker_id="bench", queues=["bench"], max_in_flight=CREDITS)
    await call.write(Request(open=opened))
    await call.read()  # opened
    if measure:
        gateway.control("--zero")
    for offset in range(0, jobs, BATCH):
        batch = [_request() for _ in range(min(BATCH, jobs - offset))]
        await stub.EnqueueJobs(queue.EnqueueJobsRequest(requests=batch))
    done, leases = 0, list[str]()
    while done < jobs:
        frame = await _read(call)
        if frame.WhichOneof("kind") != "delivery":
            continue
        leases.extend(item.lease_id for item in frame.delivery.items)
        if len(leases) >= CREDITS or done + len(leases) >= jobs:
            ack = Request()
            for lease in leases:
                ack.ack.items.add(lease_id=lease)
            done, leases = done + len(leases), []
            await call.write(ack)
    while (await _read(call)).WhichOneof("kind") != "ack_result":
        pass  # the last answer
    if measure:
        gateway.control("--dump")
    await call.done_writing()
    call.cancel()


async def unary(gateway: Callgrind, stub: QueueServiceAsyncStub, jobs: int, measure: bool) -> None:
    if measure:
        gateway.control("--zero")
    for _ in range(jobs):
        await stub.EnqueueJob(_request())
    if measure:
        gateway.control("--dump")


async def drive(gateway: Callgrind, mode: str, jobs: int) -> None:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub: QueueServiceAsyncStub = queue_grpc.QueueServiceStub(channel)
        for count, measure in ((WARM_UP, False), (jobs, True)):
            if mode == "stream":
                await stream(gateway, stub, channel, count, measure)
            else:
                await unary(gateway, stub, count, measure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["stream", "unary"])
    parser.add_argument("--jobs", type=int, default=800)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed: apt-get install valgrind")
    with tempfile.TemporaryDirectory() as out:
        gateway = Callgrind(Path(out))
        try:
            asyncio.run(drive(gateway, args.mode, args.jobs))
        finally:
            gateway.stop()
        per_job = gateway.instructions() / args.jobs
    print(f"{args.mode}: {per_job:,.0f} gateway instructions per job ({args.jobs} jobs)")


if __name__ == "__main__":
    main()
