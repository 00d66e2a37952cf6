"""RQ with SimpleWorker: jobs run one at a time in the worker process (no concurrency)."""

from __future__ import annotations

from rq import Queue

from peers.common import REDIS_URL, script
from peers.redis_records import RedisPeer, client, record_done, record_stamp

RECORDS = client()


def noop() -> None:
    record_done(RECORDS)


def stamp() -> None:
    record_stamp(RECORDS)


class RqPeer(RedisPeer):
    name = "RQ (SimpleWorker, concurrency 1)"

    def __init__(self) -> None:
        super().__init__()
        self.queue = Queue("bench", connection=self.redis)

    def worker_command(self) -> list[str]:
        return [
            *(script("rq"), "worker", "--worker-class", "rq.worker.SimpleWorker"),
            *("--url", REDIS_URL, "--quiet", "bench"),
        ]

    async def enqueue_noop(self) -> None:
        self.queue.enqueue(noop)

    async def enqueue_stamp(self) -> None:
        self.queue.enqueue(stamp)


peer = RqPeer
