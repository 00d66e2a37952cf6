"""Celery 5, Redis broker, threads pool at concurrency 8, prefetch multiplier 64; no results.

Celery's "Optimizing" guide (Prefetch Limits): with many short tasks where
throughput and round-trip latency matter, the multiplier (default 4) should
be large, "say 64, or 128". 64 reserves 512 messages at concurrency 8.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from peers.common import CONCURRENCY, REDIS_URL, script
from peers.redis_records import RedisPeer, client, record_done, record_stamp

PREFETCH_MULTIPLIER = 64


def celery_app(name: str, broker: str, **conf: Any) -> tuple[Celery, Any, Any]:
    """A Celery app configured for the bench (``conf`` added), and its tasks noop and stamp."""
    app = Celery(name, broker=broker)
    app.conf.update(
        task_ignore_result=True,
        task_default_queue="bench",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=PREFETCH_MULTIPLIER,
        **conf,
    )
    records = client()

    @app.task(name="noop")
    def noop() -> None:
        record_done(records)

    @app.task(name="stamp")
    def stamp() -> None:
        record_stamp(records)

    return app, noop, stamp


app, noop, stamp = celery_app("bench", REDIS_URL)


class CeleryPeer(RedisPeer):
    name = "Celery"
    module = "peers.celery_peer"
    """The module whose ``app`` the worker runs (``celery -A``)."""
    tasks = (noop, stamp)
    """That app's noop and stamp tasks."""

    def worker_command(self) -> list[str]:
        return [
            *(script("celery"), "-A", self.module, "worker", "--pool", "threads"),
            *("--concurrency", str(CONCURRENCY), "--queues", "bench", "--loglevel", "WARNING"),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]

    async def enqueue_noop(self) -> None:
        self.tasks[0].delay()

    async def enqueue_stamp(self) -> None:
        self.tasks[1].delay()


peer = CeleryPeer
