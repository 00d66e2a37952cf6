"""Celery 5, Redis broker, threads pool at concurrency 8, prefetch multiplier 64; no results.

Celery's "Optimizing" guide (Prefetch Limits): with many short tasks where
throughput and round-trip latency matter, the multiplier (default 4) should
be large, "say 64, or 128". 64 reserves 512 messages at concurrency 8.
"""

from __future__ import annotations

from celery import Celery

from peers.common import CONCURRENCY, REDIS_URL, script
from peers.redis_records import RedisPeer, client, record_done, record_stamp

PREFETCH_MULTIPLIER = 64
app = Celery("bench", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    task_default_queue="bench",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
)
RECORDS = client()


@app.task(name="noop")
def noop() -> None:
    record_done(RECORDS)


@app.task(name="stamp")
def stamp() -> None:
    record_stamp(RECORDS)


class CeleryPeer(RedisPeer):
    name = "Celery"

    def worker_command(self) -> list[str]:
        return [
            *(script("celery"), "-A", "peers.celery_peer", "worker", "--pool", "threads"),
            *("--concurrency", str(CONCURRENCY), "--queues", "bench", "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]

    async def enqueue_noop(self) -> None:
        noop.delay()

    async def enqueue_stamp(self) -> None:
        stamp.delay()


peer = CeleryPeer
