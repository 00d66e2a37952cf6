"""Dramatiq, Redis broker, one worker process with 8 threads, 32 messages prefetched.

Dramatiq documents one prefetch knob, ``dramatiq_queue_prefetch`` (messages
a worker process holds, running ones included; default twice its threads,
16 here) and no value to prefer for throughput. It is set to 32: as many
jobs as a jobwire worker at concurrency 8 holds (its default credits).
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peers.common import CONCURRENCY, REDIS_URL, script
from peers.redis_records import RedisPeer, client, record_done, record_stamp

dramatiq.set_broker(RedisBroker(url=REDIS_URL))
RECORDS = client()
PREFETCH = 4 * CONCURRENCY


@dramatiq.actor(actor_name="noop", queue_name="bench")
def noop() -> None:
    record_done(RECORDS)


@dramatiq.actor(actor_name="stamp", queue_name="bench")
def stamp() -> None:
    record_stamp(RECORDS)


class DramatiqPeer(RedisPeer):
    name = "Dramatiq"

    def worker_env(self) -> dict[str, str]:
        return {"dramatiq_queue_prefetch": str(PREFETCH)}

    def worker_command(self) -> list[str]:
        return [
            *(script("dramatiq"), "peers.dramatiq_peer", "--processes", "1"),
            *("--threads", str(CONCURRENCY), "--queues", "bench"),
        ]

    async def enqueue_noop(self) -> None:
        noop.send()

    async def enqueue_stamp(self) -> None:
        stamp.send()


peer = DramatiqPeer
