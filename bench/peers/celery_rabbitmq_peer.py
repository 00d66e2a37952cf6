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

from kombu import Queue

from peers.celery_peer import CeleryPeer, celery_app

URL_VARIABLE = "BENCH_AMQP_URL"
app, noop, stamp = celery_app(
    "bench-amqp",
    os.environ.get(URL_VARIABLE, "amqp://guest:guest@127.0.0.1//"),
    task_queues=[Queue("bench", queue_arguments={"x-queue-type": "quorum"})],
    broker_transport_options={"confirm_publish": True},
    worker_detect_quorum_queues=True,
)


class CeleryRabbitMqPeer(CeleryPeer):
    """Celery's worker and ``delay()`` on the broker at ``url``."""

    backend = "RabbitMQ (quorum, confirms)"
    module = "peers.celery_rabbitmq_peer"
    tasks = (noop, stamp)

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        app.conf.broker_url = url

    def worker_env(self) -> dict[str, str]:
        return {URL_VARIABLE: self.url}

    async def close(self) -> None:
        app.close()  # its connections to the vhost, before the vhost is deleted
        await super().close()
