"""Celery 5 on RabbitMQ (py-amqp), as bench/rabbitmq_bench.py's third row.

Configured like the jobwire and bare aio-pika rows of that benchmark: a
durable quorum queue, persistent messages (Celery's default), publisher
confirms on (``confirm_publish``: Celery then waits for each publish's
confirm); threads pool at concurrency 8, prefetch multiplier 64 as Celery's
"Optimizing" guide recommends for many short tasks (Celery detects the
quorum queue and uses per-consumer QoS, which quorum queues require); no
results. The handlers record in the bench Redis, as the other Celery row.
The broker URL (a vhost of the sitting's own) comes from ``BENCH_AMQP_URL``.
"""

from __future__ import annotations

import os

from celery import Celery
from kombu import Queue

from peers.celery_peer import PREFETCH_MULTIPLIER
from peers.common import CONCURRENCY, script
from peers.redis_records import RedisPeer, client, record_done, record_stamp

URL_VARIABLE = "BENCH_AMQP_URL"
app = Celery("bench-amqp", broker=os.environ.get(URL_VARIABLE, "amqp://guest:guest@127.0.0.1//"))
app.conf.update(
    task_ignore_result=True,
    task_default_queue="bench",
    task_queues=[Queue("bench", queue_arguments={"x-queue-type": "quorum"})],
    broker_transport_options={"confirm_publish": True},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
    worker_detect_quorum_queues=True,
)
RECORDS = client()


@app.task(name="noop")
def noop() -> None:
    record_done(RECORDS)


@app.task(name="stamp")
def stamp() -> None:
    record_stamp(RECORDS)


class CeleryRabbitMqPeer(RedisPeer):
    """Celery's worker and ``delay()`` on the broker at ``url``."""

    name = "Celery"
    backend = "RabbitMQ (quorum, confirms)"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        app.conf.broker_url = url

    def worker_env(self) -> dict[str, str]:
        return {URL_VARIABLE: self.url}

    def worker_command(self) -> list[str]:
        return [
            *(script("celery"), "-A", "peers.celery_rabbitmq_peer", "worker"),
            *("--pool", "threads", "--concurrency", str(CONCURRENCY), "--queues", "bench"),
            *("--loglevel", "WARNING", "--without-gossip", "--without-mingle"),
            "--without-heartbeat",
        ]

    async def close(self) -> None:
        app.close()  # its connections to the vhost, before the vhost is deleted
        await super().close()

    async def enqueue_noop(self) -> None:
        noop.delay()

    async def enqueue_stamp(self) -> None:
        stamp.delay()
