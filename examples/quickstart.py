"""jobwire quick start: a gateway, a worker and a producer, with nothing else to run.

The gateway runs embedded (memory provider, scheduler in a temporary SQLite
file), the worker streams jobs in a background thread, and the producer
enqueues a batch, follows it with a progress bar and prints the queue's
statistics. Run it with ``python3 -m hatch run demo`` (``--jobs N`` for more).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from rich.console import Console
from rich.table import Table

from jobwire.client import Client, JobDeadError, JobRequest
from jobwire.gateway import EmbeddedGateway
from jobwire.worker import HandlerRegistry, JobContext, NonRetryableError, Retry, Worker

registry = HandlerRegistry()


@registry.handler("thumbnail:make")
async def make_thumbnail(ctx: JobContext) -> dict[str, int]:
    """Pretend to resize an image."""
    await asyncio.sleep(random.uniform(0, 0.004))
    return {"width": ctx.payload["width"] // 4}


@registry.handler("email:send")
async def send_email(ctx: JobContext) -> str:
    """Fail the first attempt of some emails, to show retries."""
    if ctx.payload["flaky"] and ctx.attempt == 1:
        raise Retry(delay=0.2, message="mail server busy")
    return f"sent to {ctx.payload['to']}"


@registry.handler("report:build")
def build_report(ctx: JobContext) -> str:
    """A sync handler (runs in a thread); one report has bad input."""
    if ctx.payload["team"] == "unknown":
        raise NonRetryableError("no such team")
    return f"report for {ctx.payload['team']}"


def jobs(count: int) -> list[JobRequest]:
    """A mix of job types."""
    batch = [
        JobRequest("thumbnail:make", {"image": f"img-{n}.png", "width": 1024}) for n in range(count)
    ]
    batch += [
        JobRequest("email:send", {"to": f"user{n}@example.com", "flaky": n % 10 == 0})
        for n in range(count // 10)
    ]
    batch += [JobRequest("report:build", {"team": team}) for team in ("core", "ops", "unknown")]
    return batch


def print_stats(client: Client, console: Console) -> None:
    """Print the queue's counts as a table."""
    table = Table(title="queue statistics", title_justify="left")
    columns = ("pending", "processing", "completed", "failed", "dead")
    for column in ("queue", *columns, "workers"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for row in client.stats():
        table.add_row(row.queue, *(str(getattr(row, c)) for c in columns), str(row.workers))
    console.print(table)


def main() -> None:
    """Run the demo."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="thumbnail jobs to enqueue")
    args = parser.parse_args()
    console = Console()

    with EmbeddedGateway() as gateway:
        console.print(f"gateway listening on [bold]{gateway.address}[/] (memory provider)")
        worker = Worker(gateway.address, registry=registry, concurrency=8)
        worker.start()
        console.print(f"worker [bold]{worker.worker_id}[/] streaming, concurrency 8")
        try:
            with Client(gateway.address) as client:
                started = time.perf_counter()
                batch = client.enqueue_many(jobs(args.jobs))
                console.print(f"enqueued {len(batch):,} jobs")
                client.watch(batch, desc="processed")  # a live progress bar
                elapsed = time.perf_counter() - started
                console.print(f"{len(batch):,} jobs in {elapsed:.2f} s")
                print_stats(client, console)
                console.print(f"a thumbnail result: {batch[0].wait(timeout=5)}")
                try:
                    batch[-1].wait(timeout=5)
                except JobDeadError as dead:
                    reason = dead.last_error.message if dead.last_error else "unknown"
                    console.print(f"a dead job: {dead.job.type}, {reason}")
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
