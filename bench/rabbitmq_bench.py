"""jobwire on RabbitMQ against a bare aio-pika publisher and consumer on the same broker.

All on the machine's RabbitMQ (``--url``, a vhost of the run's own, deleted
after), durable quorum queues, persistent messages, publisher confirms on:

* bare aio-pika: a publisher keeping ``--in-flight`` confirms outstanding
  (published/s), then a consumer with prefetch 256 acking with
  ``multiple=True`` (consumed/s), on ``--jobs`` messages of a no-op payload;
* jobwire, type = "rabbitmq": the workload of ``bench/core.py`` (one gateway
  process, one worker process with concurrency 8, no-op jobs): enqueue rates,
  (a) queued then drained, (b) enqueued while the worker runs, enqueue →
  handler-start latency; job records in a SQLite file next to the gateway.

* Celery on the same broker (bench/peers/celery_rabbitmq_peer.py: a quorum
  queue, persistent messages, publisher confirms; its handlers record in the
  bench Redis at 127.0.0.1:6379, so that row needs it), the workload of
  bench/peers/common.py (one ``delay()`` per job).

The rows are interleaved run by run, and the ratios printed (the issue's
targets: enqueue ≥ 80 % of the bare publisher, drained ≥ 80 % of the bare
consumer; and jobwire to Celery).

Run: ``python3 -m hatch run bench:rabbitmq`` (machine otherwise idle).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aio_pika
from peers.common import one_run as peer_run
from peers.redis_records import reachable

import measures
from core import one_run
from measures import report

# GetQueueStats reads the records' GROUP BY: a tenth of a second, as for SQL.
measures.POLL = 0.1

URL = "amqp://guest:guest@127.0.0.1:5672/"
PAYLOAD = b"{}"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@contextmanager
def vhost(base: str) -> Iterator[str]:
    """A fresh vhost on the broker at ``base``; its URL; deleted after."""
    name = f"jobwire_bench_{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield base.rstrip("/") + "/" + name
    finally:
        rabbitmqctl("delete_vhost", name)


async def bare(url: str, jobs: int, in_flight: int) -> dict[str, float]:
    """Publish ``jobs`` messages with ``in_flight`` confirms outstanding, then consume them."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            "bare", durable=True, arguments={"x-queue-type": "quorum"}
        )
        room = asyncio.Semaphore(in_flight)

        async def publish() -> None:
            try:
                await channel.default_exchange.publish(
                    aio_pika.Message(PAYLOAD, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key="bare",
                )
            finally:
                room.release()

        started = time.perf_counter()
        tasks = []
        for _ in range(jobs):
            await room.acquire()
            tasks.append(asyncio.ensure_future(publish()))
        await asyncio.gather(*tasks)
        published = jobs / (time.perf_counter() - started)

        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=256)
        done = asyncio.get_running_loop().create_future()
        seen = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            seen += 1
            if seen % 64 == 0 or seen == jobs:
                await message.ack(multiple=True)
            if seen == jobs and not done.done():
                done.set_result(None)

        started = time.perf_counter()
        queue_on_consumer = await consumer.get_queue("bare")
        tag = await queue_on_consumer.consume(on_message)
        await done
        consumed = jobs / (time.perf_counter() - started)
        await queue_on_consumer.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    return {
        f"bare aio-pika published, {in_flight} confirms in flight (msgs/s)": published,
        "bare aio-pika consumed, prefetch 256, ack multiple (msgs/s)": consumed,
    }


def jobwire(url: str, jobs: int, samples: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "jobwire.toml"
        records = f"sqlite+aiosqlite:///{directory}/records.db"
        config.write_text(
            f'[provider]\ntype = "rabbitmq"\nurl = "{url}"\ndatabase_url = "{records}"\n'
        )
        return asyncio.run(one_run(jobs, samples, "--config", str(config), call_timeout=60))


async def celery(url: str, jobs: int, samples: int) -> dict[str, float]:
    from peers.celery_rabbitmq_peer import CeleryRabbitMqPeer

    peer = CeleryRabbitMqPeer(url)
    await peer.open()
    try:
        return await peer_run(peer, jobs, samples)
    finally:
        await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=URL, help="the broker, without a vhost")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300, help="latency samples")
    parser.add_argument("--in-flight", type=int, default=500, help="bare publisher's confirms")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bare_runs: list[dict[str, float]] = []
    jobwire_runs: list[dict[str, float]] = []
    celery_runs: list[dict[str, float]] = []
    no_redis = reachable()
    # Celery's app keeps the broker URL it first connected with: one vhost for all its runs.
    with vhost(args.url) as celery_url:
        for _ in range(args.repeat):  # interleaved: every row sees the same machine
            with vhost(args.url) as url:
                bare_runs.append(asyncio.run(bare(url, args.jobs, args.in_flight)))
            with vhost(args.url) as url:
                jobwire_runs.append(jobwire(url, args.jobs, args.samples))
            if no_redis is None:
                celery_runs.append(asyncio.run(celery(celery_url, args.jobs, args.samples)))
    print(f"\nbare aio-pika, {args.jobs:,} messages, {args.repeat} runs\n", flush=True)
    print(report(bare_runs), flush=True)
    print(f"\njobwire, rabbitmq provider, {args.jobs:,} no-op jobs, {args.repeat} runs\n")
    print(report(jobwire_runs), flush=True)
    published = statistics.median(next(iter(run.values())) for run in bare_runs)
    consumed = statistics.median(list(run.values())[1] for run in bare_runs)
    enqueue = statistics.median(
        run["enqueue_many, batches of 1000 (jobs/s)"] for run in jobwire_runs
    )
    drained = statistics.median(
        run["end-to-end (a) queued then drained (jobs/s)"] for run in jobwire_runs
    )
    print(f"\nenqueue / bare publisher: {enqueue / published:.0%} (target ≥ 80 %)")
    print(f"drained / bare consumer: {drained / consumed:.0%} (target ≥ 80 %)")
    if not celery_runs:
        print(f"\nno Celery row: {no_redis}")
        return
    print(f"\nCelery, RabbitMQ quorum queue, confirms, {args.jobs:,} no-op jobs\n")
    print(report(celery_runs), flush=True)
    for key in (
        "end-to-end (a) queued then drained (jobs/s)",
        "end-to-end (b) enqueued while running (jobs/s)",
    ):
        ratio = statistics.median(run[key] for run in jobwire_runs) / statistics.median(
            run[key] for run in celery_runs
        )
        print(f"jobwire / Celery, {key}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
