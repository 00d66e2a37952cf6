"""A peer's enqueue → start latency, a few samples: is its worker woken at once?

For a peer row that looks broken (procrastinate's ~5 s "idle" latency): start
the peer's worker as ``compare`` does, drain a few no-op jobs, then take
``--samples`` stamp samples twice: each enqueued the instant the previous
handler started (``compare``'s loop before 2026-12-07), and each after
``IDLE_GAP`` (its loop since), and print both. Seconds, not minutes.

Run: ``python3 -m hatch run bench:python bench/peer_latency.py procrastinate``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from compare import PEERS, load
from peers.common import IDLE_GAP, Peer, wait_done, worker_process


async def samples(peer: Peer, count: int, gap: float) -> list[float]:
    """Enqueue → handler start, in ms, ``count`` times, ``gap`` seconds after each start."""
    values = []
    for _ in range(count):
        await asyncio.sleep(gap)
        sent = time.time()
        values.append((await peer.stamp() - sent) * 1000)
    return values


async def check(peer: Peer, jobs: int, count: int, idle: float) -> None:
    await peer.open()
    try:
        await peer.reset()
        for _ in range(jobs):
            await peer.enqueue_noop()
        with worker_process(peer) as process:
            await wait_done(peer, process, jobs, within=60)
            print(f"{peer.name}: {jobs} no-op jobs drained")
            ways = [("back to back", 0.0), (f"after {IDLE_GAP * 1000:.0f} ms", IDLE_GAP)]
            if idle:
                ways.append((f"after {idle:.0f} s idle", idle))
            for label, gap in ways:
                values = await samples(peer, count, gap)
                print(
                    f"  {label:>16}: p50 {statistics.median(values):,.1f} ms,"
                    f" max {max(values):,.1f} ms ({', '.join(f'{v:,.1f}' for v in values)})"
                )
    finally:
        await peer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=PEERS)
    parser.add_argument("--jobs", type=int, default=20, help="no-op jobs drained first")
    parser.add_argument("--samples", type=int, default=5, help="stamp samples per way")
    parser.add_argument(
        "--idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also sample, each after this long idle (procrastinate re-arms LISTEN every 30 s)",
    )
    args = parser.parse_args()
    make, reason, cleanup = load(args.peer)
    if make is None:
        raise SystemExit(reason)
    try:
        asyncio.run(check(make(), args.jobs, args.samples, args.idle))
    finally:
        cleanup()


if __name__ == "__main__":
    main()
