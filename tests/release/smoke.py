"""Run by ``test_wheels.py`` with a fresh virtualenv's Python: nothing from the repository.

Starts the installed ``jobwire-gateway`` command, runs a worker and enqueues a
job through the installed client, and prints where the packages came from.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jobwire.client
import jobwire.gateway
import jobwire.worker
from jobwire.client import Client
from jobwire.worker import HandlerRegistry, JobContext, Worker

registry = HandlerRegistry()


@registry.handler("smoke:add")
def add(ctx: JobContext) -> int:
    return int(ctx.payload["a"]) + int(ctx.payload["b"])


def main() -> None:
    gateway_command = Path(sys.executable).parent / "jobwire-gateway"
    with subprocess.Popen(
        [str(gateway_command), "--listen", "127.0.0.1:0", "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
        text=True,
    ) as gateway:
        try:
            assert gateway.stdout is not None
            address = gateway.stdout.readline().split()[-1]
            worker = Worker(address, registry=registry)
            worker.start()
            try:
                with Client(address) as client:
                    print("result", client.enqueue("smoke:add", {"a": 2, "b": 3}).wait(timeout=20))
            finally:
                worker.stop()
        finally:
            gateway.terminate()
            gateway.wait(20)
    for module in (jobwire.client, jobwire.gateway, jobwire.worker):
        print("from", Path(module.__file__ or "").parent)


if __name__ == "__main__":
    main()
